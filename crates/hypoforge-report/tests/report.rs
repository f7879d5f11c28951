//! The report as a whole: the files a run leaves behind, their links, their escaping, and what a
//! real browser makes of them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hypoforge_report::{
    CheckRow, Count, Figure, FullEvaluation, HypothesisPage, KindSection, LeaderRow, Leaderboard,
    ReportData, ReportError, RunSummary, Shape, TaskRow, write_report,
};

const TITLE: &str = "hypoforge run 7: activations & preprocessors";
/// Runs a script through an attribute if it is ever parsed as markup, and shows in the title.
const HOSTILE_NAME: &str = r#"<img src=x onerror="document.title='pwned'">"#;
const HOSTILE_SOURCE: &str = "pub fn f(x: f32) -> f32 { x } // </pre><script>document.title='pwned'</script>\nconst S: &str = \"<b>&amp;</b>\";";
const BROWSER_MISSING: &str =
    "install chromium (apt-get install chromium) or set HYPOFORGE_CHROMIUM";

/// A stable stand-in for a SHA-256: 64 hex digits from FNV-1a, so that page names are known.
fn hash_of(name: &str) -> String {
    (0u64..4)
        .map(|round| {
            let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ round;
            for b in name.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

fn page_of(name: &str) -> String {
    format!("h/{}.html", &hash_of(name)[..16])
}

fn row(name: &str, baseline: bool, b_wr: f64) -> LeaderRow {
    LeaderRow {
        hash: hash_of(name),
        name: name.to_owned(),
        baseline,
        b_wr,
        b_wr_ci: [(b_wr - 0.08).max(0.0), (b_wr + 0.08).min(1.0)],
        bsota_wr: b_wr * 0.6,
        bsota_wr_ci: [(b_wr * 0.6 - 0.1).max(0.0), (b_wr * 0.6 + 0.1).min(1.0)],
        mean_val_loss: Some(0.31 + (1.0 - b_wr) * 0.2),
        mean_val_acc: Some(0.8 + b_wr * 0.1),
        failed_trials: 0,
    }
}

fn tanh_shape() -> Shape {
    let x: Vec<f32> = (0..161u8).map(|i| -4.0 + f32::from(i) * 0.05).collect();
    Shape {
        f: x.iter().map(|v| v.tanh()).collect(),
        df: x.iter().map(|v| 1.0 - v.tanh() * v.tanh()).collect(),
        x,
    }
}

fn hypothesis(name: &str, kind: &str, baseline: bool, verdict: &str) -> HypothesisPage {
    HypothesisPage {
        novelty: (!baseline).then(|| "N-score 0.012, nearest gelu: a rediscovery <of>".to_owned()),
        prediction: None,
        hash: hash_of(name),
        kind: kind.to_owned(),
        name: name.to_owned(),
        baseline,
        source: format!("pub fn {}(x: f32) -> f32 {{ x }}", name.replace('-', "_")),
        provenance: vec![
            ("model".to_owned(), "test-llm-1".to_owned()),
            ("round".to_owned(), "3".to_owned()),
        ],
        verdict: verdict.to_owned(),
        error: None,
        checks: vec![
            CheckRow {
                name: "finite on [-100, 100]".to_owned(),
                passed: true,
                detail: "all 2001 points finite".to_owned(),
            },
            CheckRow {
                name: "not constant".to_owned(),
                passed: verdict == "valid",
                detail: "range 1.99".to_owned(),
            },
        ],
        shape: None,
        per_task: vec![
            TaskRow {
                task: "moons".to_owned(),
                trials: 5,
                b_wr: 0.7,
                bsota_wr: 0.4,
                mean_val_loss: Some(0.28),
            },
            TaskRow {
                task: "friedman1".to_owned(),
                trials: 5,
                b_wr: 0.5,
                bsota_wr: 0.2,
                mean_val_loss: None,
            },
        ],
        failures: vec![],
    }
}

fn sample() -> ReportData {
    let mut swishy = hypothesis("swishy", "activation", false, "valid");
    swishy.shape = Some(tanh_shape());
    swishy.failures = vec!["moons/3: trap: out of fuel".to_owned()];
    let mut tanh = hypothesis("tanh", "activation", true, "valid");
    tanh.shape = Some(tanh_shape());

    let mut hostile = hypothesis(HOSTILE_NAME, "activation", false, "valid");
    hostile.source = HOSTILE_SOURCE.to_owned();
    hostile.shape = Some(tanh_shape());
    hostile
        .provenance
        .push(("parent".to_owned(), HOSTILE_NAME.to_owned()));
    hostile.failures = vec![format!("moons/1: {HOSTILE_NAME}")];
    hostile.checks[0].detail = "</td></tr></table><script>alert(1)</script>".to_owned();

    let mut broken = hypothesis("broken-relu", "activation", false, "did not compile");
    broken.error = Some(
        "error[E0308]: mismatched types\n --> src/lib.rs:3:5\n  |\n3 |     x > 0.0\n  |     \
         ^^^^^^^ expected `f32`, found `bool`"
            .to_owned(),
    );
    broken.checks.clear();
    broken.per_task.clear();
    let mut invalid = hypothesis("flatline", "activation", false, "invalid");
    invalid.error = Some("check `not constant` failed:\nrange 0 over [-100, 100]".to_owned());
    invalid.per_task.clear();
    let mut duplicate = hypothesis("relu-again", "activation", false, "duplicate of relu");
    duplicate.per_task.clear();

    let mut nan_row = row("robust-scale", false, f64::NAN);
    nan_row.mean_val_loss = Some(f64::INFINITY);
    nan_row.mean_val_acc = None;
    nan_row.failed_trials = 3;

    ReportData {
        title: TITLE.to_owned(),
        generated_by: "hypoforge 0.1.0".to_owned(),
        run: RunSummary {
            id: 7,
            state: "done".to_owned(),
            seed: 42,
            config_toml: "[run]\nkinds = [\"activation\", \"preprocessor\"]\nnote = \"a < b && c\"\n"
                .to_owned(),
            counts: [
                ("generated", 9),
                ("compiled", 8),
                ("valid", 6),
                ("duplicates", 1),
                ("evaluated", 6),
            ]
            .into_iter()
            .map(|(label, value)| Count {
                label: label.to_owned(),
                value,
            })
            .collect(),
        },
        kinds: vec![
            KindSection {
                kind: "activation".to_owned(),
                one_pass: Leaderboard {
                    suite: "quick".to_owned(),
                    trials: 10,
                    rows: vec![
                        row("swishy", false, 0.71),
                        row("relu", true, 0.55),
                        row(HOSTILE_NAME, false, 0.5),
                        row("tanh", true, 0.45),
                    ],
                },
                full: Some(FullEvaluation {
                    board: Leaderboard {
                        suite: "standard".to_owned(),
                        trials: 40,
                        rows: vec![
                            row("relu", true, 0.6),
                            row("swishy", false, 0.58),
                            row("tanh", true, 0.4),
                        ],
                    },
                    kendall_tau: Some(0.333_333),
                    tau_components: 3,
                }),
            },
            KindSection {
                kind: "preprocessor".to_owned(),
                one_pass: Leaderboard {
                    suite: "quick".to_owned(),
                    trials: 10,
                    rows: vec![row("standardize", true, 0.5), nan_row],
                },
                full: Some(FullEvaluation {
                    board: Leaderboard {
                        suite: "standard".to_owned(),
                        trials: 40,
                        rows: vec![row("standardize", true, 0.5)],
                    },
                    kendall_tau: None,
                    tau_components: 1,
                }),
            },
        ],
        hypotheses: vec![
            swishy,
            hypothesis("relu", "activation", true, "valid"),
            tanh,
            hostile,
            broken,
            invalid,
            duplicate,
            hypothesis("standardize", "preprocessor", true, "valid"),
            hypothesis("robust-scale", "preprocessor", false, "valid"),
        ],
        figures: vec![Figure {
            title: "B-WR by round".to_owned(),
            caption: "One-pass B-WR of each round's best candidate; 0.5 is parity.".to_owned(),
            svg: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
                  width=\"400\" height=\"200\" viewBox=\"0 0 400 200\"><rect width=\"400\" \
                  height=\"200\" fill=\"#eef\"/><polyline points=\"20,180 140,120 260,90 380,40\" \
                  fill=\"none\" stroke=\"#333\" stroke-width=\"2\"/><text x=\"20\" y=\"20\">\
                  round-figure</text></svg>"
                .to_owned(),
        }],
    }
}

fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![dir.join("index.html")];
    for entry in fs::read_dir(dir.join("h")).expect("h/ exists") {
        files.push(entry.expect("readable entry").path());
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `attr="..."` value in a page, by plain scanning: the pages are ours and always quote.
fn attribute_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut values = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&needle) {
        rest = &rest[start + needle.len()..];
        let end = rest.find('"').expect("attribute value is closed");
        values.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    values
}

#[test]
fn writes_index_stylesheet_and_a_page_per_hypothesis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report/nested");
    let data = sample();
    let files = write_report(&data, &out).expect("report written");
    assert_eq!(files.index, out.join("index.html"));
    assert_eq!(files.pages, data.hypotheses.len());
    assert!(out.join("style.css").is_file());
    for h in &data.hypotheses {
        assert!(out.join(page_of(&h.name)).is_file(), "{}", h.name);
    }
    assert_eq!(html_files(&out).len(), 1 + data.hypotheses.len());
    // Nothing is left behind by the temporary-file-and-rename dance.
    let stray: Vec<_> = fs::read_dir(&out)
        .expect("dir")
        .chain(fs::read_dir(out.join("h")).expect("h"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    let index = read(&files.index);
    for expected in [
        "<title>hypoforge run 7: activations &amp; preprocessors</title>",
        "Run 7 · done · seed 42",
        "<li>duplicates <b>1</b></li>",
        "note = &quot;a &lt; b &amp;&amp; c&quot;",
        "<h2>activation</h2>",
        "<h2>preprocessor</h2>",
        "Suite <code>standard</code>, 40 trials per component.",
        "0.71 <span class=\"ci\">[0.63, 0.79]</span>",
        "Kendall τ (one-pass vs full) = 0.33 over 3 components.",
        "Kendall τ (one-pass vs full): not enough components (1).",
        "<span class=\"badge\">baseline</span>",
        "<h3>B-WR by round</h3>\n<svg xmlns",
        "round-figure</text></svg>",
        "0.5 is parity.</figcaption>",
        "Generated by hypoforge 0.1.0",
    ] {
        assert!(index.contains(expected), "index lacks {expected:?}");
    }
    assert!(
        !index.contains("<?xml"),
        "the figure's XML prologue is dropped"
    );
    // The candidate's name sits in a leaderboard cell that links to its page.
    let swishy_cell = format!(
        "<td class=\"name\"><a href=\"{}\">swishy</a></td>",
        page_of("swishy")
    );
    assert_eq!(index.matches(&swishy_cell).count(), 2, "one-pass and full");
    // Rejects are listed with their verdict; ranked hypotheses are not.
    let unranked = &index[index.find("Did not make it").expect("reject list")..];
    for (name, verdict) in [
        ("broken-relu", "did not compile"),
        ("flatline", "invalid"),
        ("relu-again", "duplicate of relu"),
    ] {
        let row = format!(
            "<a href=\"{}\">{name}</a></td><td>activation</td><td>{verdict}</td>",
            page_of(name)
        );
        assert!(unranked.contains(&row), "missing {row}");
    }
    assert!(!unranked.contains(">swishy<"));
    // Non-finite numbers are shown for what they are and the table still closes.
    let nan_row = &index[index.find(">robust-scale</a>").expect("nan row")..];
    let nan_row = &nan_row[..nan_row.find("</tr>").expect("row closes")];
    assert!(
        nan_row.contains("NaN <span class=\"ci\">[0.00, 1.00]</span>"),
        "{nan_row}"
    );
    assert!(
        nan_row
            .contains("<td class=\"num\">∞</td><td class=\"num\">—</td><td class=\"num\">3</td>"),
        "{nan_row}"
    );
    assert!(index.trim_end().ends_with("</html>"));

    let swishy = read(&out.join(page_of("swishy")));
    for expected in [
        "<a href=\"../index.html\">",
        "href=\"../style.css\"",
        "<h1>swishy</h1>",
        "<dd class=\"verdict-valid\">valid</dd>",
        "<dt>Rank</dt><dd>1 of 4 (one-pass), 2 of 3 (full)</dd>",
        "<tr><th>model</th><td>test-llm-1</td></tr>",
        "<td class=\"pass\">pass</td>",
        "<h2>Shape</h2>",
        "at 161 points.",
        "<td>friedman1</td><td class=\"num\">5</td><td class=\"num\">0.50</td><td class=\"num\">0.20</td><td class=\"num\">—</td>",
        "<li><code>moons/3: trap: out of fuel</code></li>",
        "<pre class=\"source\"><code>pub fn swishy(x: f32) -&gt; f32 { x }</code></pre>",
    ] {
        assert!(swishy.contains(expected), "swishy page lacks {expected:?}");
    }
    assert_eq!(swishy.matches("<polyline").count(), 2, "f and f′");

    let broken = read(&out.join(page_of("broken-relu")));
    assert!(broken.contains(
        "<pre class=\"error\">error[E0308]: mismatched types\n --&gt; src/lib.rs:3:5\n  |\n3 |     \
         x &gt; 0.0\n  |     ^^^^^^^ expected `f32`, found `bool`</pre>"
    ));
    assert!(broken.contains("<dd class=\"verdict-other\">did not compile</dd>"));
    assert!(!broken.contains("<h2>Shape</h2>") && !broken.contains("<dt>Rank</dt>"));
}

#[test]
fn every_link_resolves_to_a_file_in_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&sample(), dir.path()).expect("report written");
    let mut checked = 0;
    for file in html_files(dir.path()) {
        let html = read(&file);
        let base = file.parent().expect("file in a folder");
        let links = attribute_values(&html, "href");
        assert!(!links.is_empty(), "{} links nowhere", file.display());
        assert!(
            attribute_values(&html, "src").is_empty(),
            "{}",
            file.display()
        );
        for link in links {
            assert!(
                !link.contains(':') && !link.starts_with('/') && !link.contains('#'),
                "{}: {link} is not a plain relative link",
                file.display()
            );
            let target = base.join(&link);
            assert!(target.is_file(), "{}: {link} is dangling", file.display());
            assert!(
                target
                    .canonicalize()
                    .expect("target")
                    .starts_with(dir.path().canonicalize().expect("dir")),
                "{link} leaves the report"
            );
            checked += 1;
        }
    }
    // The index links the stylesheet, every hypothesis once or more, and each page links back.
    assert!(checked > 2 * sample().hypotheses.len(), "{checked}");
}

#[test]
fn untrusted_strings_appear_only_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&sample(), dir.path()).expect("report written");
    for file in html_files(dir.path()) {
        let html = read(&file);
        let lower = html.to_ascii_lowercase();
        for raw in [
            "<script",
            "<img",
            "onerror=\"",
            "</td></tr></table><",
            "<b>&amp;</b>",
        ] {
            assert!(!lower.contains(raw), "{}: raw {raw:?}", file.display());
        }
    }
    let escaped_name = "&lt;img src=x onerror=&quot;document.title=&#39;pwned&#39;&quot;&gt;";
    let index = read(&dir.path().join("index.html"));
    assert!(index.contains(&format!(">{escaped_name}</a>")));
    let page = read(&dir.path().join(page_of(HOSTILE_NAME)));
    for expected in [
        format!("<title>{escaped_name} — hypoforge run 7"),
        format!("<h1>{escaped_name}</h1>"),
        format!("<tr><th>parent</th><td>{escaped_name}</td></tr>"),
        format!("<li><code>moons/1: {escaped_name}</code></li>"),
        "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;script&gt;alert(1)&lt;/script&gt;".to_owned(),
        "// &lt;/pre&gt;&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;\nconst S: &amp;str = &quot;&lt;b&gt;&amp;amp;&lt;/b&gt;&quot;;</code></pre>".to_owned(),
    ] {
        assert!(page.contains(&expected), "hostile page lacks {expected:?}");
    }
    assert!(
        page.contains("aria-label=\"f and f′ of &lt;img"),
        "the plot's label too"
    );
}

#[test]
fn empty_run_still_gives_a_complete_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = ReportData {
        title: String::new(),
        generated_by: String::new(),
        run: RunSummary {
            id: -1,
            state: "running".to_owned(),
            seed: u64::MAX,
            config_toml: String::new(),
            counts: vec![],
        },
        kinds: vec![],
        hypotheses: vec![],
        figures: vec![],
    };
    let files = write_report(&data, dir.path()).expect("report written");
    assert_eq!(files.pages, 0);
    let index = read(&files.index);
    assert!(index.contains("No leaderboards: nothing was evaluated."));
    assert!(index.contains(&format!("seed {}", u64::MAX)));
    assert!(!index.contains("Did not make it") && !index.contains("<table"));
    assert!(index.starts_with("<!DOCTYPE html>") && index.trim_end().ends_with("</html>"));
    assert!(dir.path().join("h").is_dir() && dir.path().join("style.css").is_file());
}

#[test]
fn a_second_report_overwrites_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = sample();
    write_report(&data, dir.path()).expect("first");
    data.title = "second".to_owned();
    data.hypotheses[0].source = "pub fn changed() {}".to_owned();
    write_report(&data, dir.path()).expect("second");
    assert!(read(&dir.path().join("index.html")).contains("<title>second</title>"));
    assert!(read(&dir.path().join(page_of("swishy"))).contains("pub fn changed() {}"));
}

#[test]
fn an_unwritable_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x").expect("file");
    let err = write_report(&sample(), &file).expect_err("a file is no folder");
    let ReportError::Io { path, .. } = &err;
    assert_eq!(path, &file);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot write {}: ", file.display())),
        "{message}"
    );
}

// --- the real browser ---------------------------------------------------------------------

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HYPOFORGE_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn file_url(path: &Path) -> String {
    let path = path.canonicalize().expect("absolute path");
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// Runs the browser with its output in files (a pipe could fill and stall it) and kills it if
/// it hangs, so that a broken browser fails the test instead of wedging the suite.
fn run_browser(browser: &Path, work: &Path, tag: &str, args: &[String]) -> (ExitStatus, String) {
    let stdout_path = work.join(format!("{tag}.stdout"));
    let stderr_path = work.join(format!("{tag}.stderr"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-dev-shm-usage",
            "--window-size=1280,2000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join(format!("profile-{tag}")).display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{tag}: browser still running after 60 s\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{tag}: browser exited with {status}\n{}",
        fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    (status, read(&stdout_path))
}

fn screenshot(browser: &Path, work: &Path, tag: &str, page: &Path) {
    let png = work.join(format!("{tag}.png"));
    run_browser(
        browser,
        work,
        tag,
        &[format!("--screenshot={}", png.display()), file_url(page)],
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("{tag}: no screenshot: {e}"));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{tag}: not a PNG");
    assert!(
        bytes.len() > 10_000,
        "{tag}: {} bytes is a blank page",
        bytes.len()
    );
}

fn dump_dom(browser: &Path, work: &Path, tag: &str, page: &Path) -> String {
    let (_, dom) = run_browser(
        browser,
        work,
        tag,
        &["--dump-dom".to_owned(), file_url(page)],
    );
    assert!(dom.contains("</html>"), "{tag}: no DOM in output:\n{dom}");
    dom
}

fn dom_title(dom: &str) -> &str {
    let start = dom.find("<title>").expect("a title") + "<title>".len();
    let end = dom[start..].find("</title>").expect("title closes");
    &dom[start..start + end]
}

#[test]
fn report_renders_in_a_real_browser() {
    let Some(browser) = find_chromium() else {
        assert!(std::env::var_os("CI").is_none(), "{BROWSER_MISSING}");
        eprintln!("skipping the browser test: {BROWSER_MISSING}");
        return;
    };
    if let Ok(out) = Command::new(&browser).arg("--version").output() {
        eprintln!(
            "browser test with {}: {}",
            browser.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report");
    let work = dir.path().join("browser");
    fs::create_dir_all(&work).expect("work dir");
    let files = write_report(&sample(), &report).expect("report written");
    let hostile_page = report.join(page_of(HOSTILE_NAME));
    let shape_page = report.join(page_of("swishy"));

    screenshot(&browser, &work, "index-shot", &files.index);
    screenshot(&browser, &work, "page-shot", &shape_page);

    let index = dump_dom(&browser, &work, "index-dom", &files.index);
    assert_eq!(
        dom_title(&index),
        "hypoforge run 7: activations &amp; preprocessors"
    );
    let swishy_cell = format!(
        "<td class=\"name\"><a href=\"{}\">swishy</a></td>",
        page_of("swishy")
    );
    assert!(
        index.contains(&swishy_cell),
        "leaderboard row missing:\n{index}"
    );
    assert!(index.contains("<td class=\"num\">∞</td>"));
    // Serialized text escapes only & < >: the payload is a text node, not an element.
    let as_text = r#"&lt;img src=x onerror="document.title='pwned'"&gt;"#;
    assert!(index.contains(as_text), "hostile name not shown as text");
    assert!(!index.contains("<img"));

    let page = dump_dom(&browser, &work, "page-dom", &hostile_page);
    let title = dom_title(&page);
    assert_ne!(title, "pwned");
    assert_eq!(
        title,
        format!("{as_text} — hypoforge run 7: activations &amp; preprocessors")
    );
    assert!(page.contains(&format!("<h1>{as_text}</h1>")));
    assert!(page.contains("&lt;/pre&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;"));
    assert!(!page.contains("<img") && !page.contains("<script"));

    let shape = dump_dom(&browser, &work, "shape-dom", &shape_page);
    assert_eq!(shape.matches("<polyline").count(), 2, "f and f′ are drawn");
}
