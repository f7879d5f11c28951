//! Getting the hypothesis out of a model's reply: prose plus a fenced code block, several blocks,
//! or bare code.

/// Markers that say a piece of text is a hypothesis file rather than prose or a snippet.
const FILE_MARKERS: [&str; 4] = [
    "hypoforge_sdk",
    "activation!(",
    "preprocessor!(",
    "regularizer!(",
];

/// The hypothesis source in `reply`, or `None` when it holds no code.
///
/// Among fenced blocks (``` or ~~~, any info string), the last one that looks like a whole file
/// wins (a model that corrects itself puts the fix last); failing that, the longest block. A
/// reply without fences is taken as code when it looks like a file, from its first line of code.
pub fn extract_code(reply: &str) -> Option<String> {
    let blocks = fenced_blocks(reply);
    let chosen = blocks
        .iter()
        .rev()
        .find(|b| looks_like_file(b))
        .or_else(|| blocks.iter().max_by_key(|b| b.len()))
        .map(|b| b.to_string());
    let code = chosen.or_else(|| bare_code(reply))?;
    let code = code.trim_matches('\n').to_owned();
    (!code.trim().is_empty()).then(|| code + "\n")
}

/// The reply's prose before its code: the idea, as the prompt asks for it first. At most about
/// 600 bytes, cut at a character boundary.
pub fn extract_idea(reply: &str) -> Option<String> {
    let prose: Vec<&str> = reply
        .lines()
        .take_while(|line| fence_of(line.trim_start()).is_none())
        .collect();
    let prose = prose.join("\n");
    let prose = prose.trim();
    if prose.is_empty() || looks_like_file(prose) {
        return None;
    }
    let mut end = prose.len().min(600);
    while !prose.is_char_boundary(end) {
        end -= 1;
    }
    Some(prose[..end].to_owned())
}

fn looks_like_file(text: &str) -> bool {
    FILE_MARKERS.iter().any(|m| text.contains(m))
}

/// The bodies of the fenced blocks in order. An unclosed fence runs to the end of the reply (a
/// reply cut off by the token limit still yields what it has).
fn fenced_blocks(reply: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut open: Option<(&str, usize)> = None;
    let mut offset = 0;
    for line in reply.split_inclusive('\n') {
        let trimmed = line.trim_start();
        match open {
            None => {
                if let Some(fence) = fence_of(trimmed) {
                    open = Some((fence, offset + line.len()));
                }
            }
            Some((fence, start)) => {
                let rest = trimmed.trim_end();
                if rest.starts_with(fence) && rest.chars().all(|c| c == '`' || c == '~') {
                    blocks.push(&reply[start..offset]);
                    open = None;
                }
            }
        }
        offset += line.len();
    }
    if let Some((_, start)) = open {
        blocks.push(&reply[start.min(reply.len())..]);
    }
    blocks
}

/// The fence a line opens (its run of three or more backticks or tildes).
fn fence_of(line: &str) -> Option<&str> {
    for ch in ['`', '~'] {
        let run = line.len() - line.trim_start_matches(ch).len();
        if run >= 3 {
            return Some(&line[..run]);
        }
    }
    None
}

/// A reply that is code without fences: from the first line that starts code to the end.
fn bare_code(reply: &str) -> Option<String> {
    if !looks_like_file(reply) {
        return None;
    }
    let starts_code = |line: &str| {
        let t = line.trim_start();
        [
            "//", "use ", "fn ", "const ", "struct ", "impl ", "#[", "pub ",
        ]
        .iter()
        .any(|p| t.starts_with(p))
    };
    let lines: Vec<&str> = reply.lines().collect();
    let first = lines.iter().position(|l| starts_code(l))?;
    Some(lines[first..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "// Idea.\nuse hypoforge_sdk::prelude::*;\n\nfn f<R: Real>(x: R) -> R {\n    x\n}\n\nactivation!(name = \"f\", f = f);\n";

    #[test]
    fn a_lone_fenced_block_is_the_code() {
        let reply = format!("```rust\n{FILE}```\n");
        assert_eq!(extract_code(&reply).unwrap(), FILE);
    }

    #[test]
    fn prose_around_the_block_is_dropped() {
        let reply = format!(
            "Here is my idea: a smooth gate.\n\n```rust\n{FILE}```\n\nIt should beat GELU because ..."
        );
        assert_eq!(extract_code(&reply).unwrap(), FILE);
    }

    #[test]
    fn the_file_block_wins_over_snippets_and_the_last_file_over_earlier_ones() {
        let reply = format!(
            "The formula:\n```\nf(x) = x * sigmoid(x)\n```\nFirst try:\n```rust\n// old\nuse hypoforge_sdk::prelude::*;\n```\nFixed:\n~~~rs\n{FILE}~~~\n"
        );
        assert_eq!(extract_code(&reply).unwrap(), FILE);
    }

    #[test]
    fn bare_code_is_taken_from_its_first_line_of_code() {
        assert_eq!(extract_code(FILE).unwrap(), FILE);
        let reply = format!("Sure! {}", FILE);
        assert!(
            extract_code(&reply)
                .unwrap()
                .starts_with("use hypoforge_sdk")
        );
    }

    #[test]
    fn a_reply_without_code_gives_none() {
        assert_eq!(
            extract_code("I would propose x * tanh(x), it is smooth."),
            None
        );
        assert_eq!(extract_code(""), None);
        assert_eq!(extract_code("```rust\n\n```"), None);
    }

    #[test]
    fn the_idea_is_the_prose_before_the_code() {
        let reply = format!("A smooth gate.\nIt keeps gradients.\n\n```rust\n{FILE}```\nMore.");
        assert_eq!(
            extract_idea(&reply).unwrap(),
            "A smooth gate.\nIt keeps gradients."
        );
        assert_eq!(extract_idea(FILE), None);
        assert_eq!(extract_idea(&format!("```rust\n{FILE}```")), None);
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        let reply = format!("```rust\n{FILE}");
        assert_eq!(extract_code(&reply).unwrap(), FILE);
    }

    #[test]
    fn longer_fences_and_indented_fences_are_recognized() {
        let reply = format!("  ````rust\n{FILE}```\nstill inside\n  ````\n");
        let code = extract_code(&reply).unwrap();
        assert!(
            code.contains("still inside"),
            "a ``` inside a ```` block does not close it"
        );
    }
}
