//! Keeps the user guide (`docs/`) honest, on the CPU:
//!
//! - every page is compiled as doctests (`src/guide.rs` includes it) and listed in
//!   `docs/README.md`;
//! - every code block says its language (rustdoc would take an unlabelled block for Rust), and
//!   no Rust block is `ignore`d;
//! - every `no_run` Rust block (an example that needs a GPU) starts with the line
//!   `// tests/guide_snippets/NAME.rs` and is, character for character, that file, which
//!   `tests/guide_gpu.rs` runs on a GPU; and every snippet file is used by a page and run there.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// One fenced code block of a page.
#[derive(Debug)]
struct Block {
    page: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The info string's words (`rust`, `no_run`, …).
    info: Vec<String>,
    /// The block's text, each line ending in `\n`, the fence's indentation removed.
    text: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The guide's pages (every `.md` of `docs/` but the index), sorted by name.
fn pages() -> Vec<String> {
    let mut pages: Vec<String> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    pages.sort();
    pages
}

/// The fenced code blocks of `text` (backtick fences, possibly indented).
fn blocks(page: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, Vec<String>, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let info = info
                        .split(',')
                        .map(|w| w.trim().to_string())
                        .filter(|w| !w.is_empty())
                        .collect();
                    open = Some((i + 1, indent, info, String::new()));
                }
            }
            Some((start, fence_indent, info, body)) => {
                if trimmed.trim_end() == "```" {
                    out.push(Block {
                        page: page.to_string(),
                        line: *start,
                        info: std::mem::take(info),
                        text: std::mem::take(body),
                    });
                    open = None;
                } else {
                    let cut = line.len().min(*fence_indent);
                    assert!(
                        line[..cut].trim().is_empty(),
                        "{page}:{}: a line of a block is less indented than its fence",
                        i + 1
                    );
                    body.push_str(&line[cut..]);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "{page}: a code block is not closed");
    out
}

fn all_blocks() -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|p| blocks(p, &read(&root().join("docs").join(p))))
        .collect()
}

/// The rustdoc attributes that make a block a Rust block even without the word `rust`.
const RUSTDOC_WORDS: [&str; 5] = [
    "no_run",
    "ignore",
    "should_panic",
    "compile_fail",
    "test_harness",
];

fn is_rust(b: &Block) -> bool {
    b.info.first().is_some_and(|w| w == "rust")
}

const SNIPPET_PREFIX: &str = "// tests/guide_snippets/";

/// The snippet file a `no_run` block names on its first line.
fn snippet_name(b: &Block) -> String {
    let first = b.text.lines().next().unwrap_or_default();
    let name = first
        .strip_prefix(SNIPPET_PREFIX)
        .and_then(|n| n.strip_suffix(".rs"))
        .unwrap_or_else(|| {
            panic!(
                "{}:{}: a `no_run` block must start with `{SNIPPET_PREFIX}NAME.rs` (the GPU \
                 snippet that tests/guide_gpu.rs runs); it starts with {first:?}",
                b.page, b.line
            )
        });
    name.to_string()
}

#[test]
fn every_page_is_a_doctest_and_in_the_index() {
    let guide = read(&root().join("src/guide.rs"));
    let index = read(&root().join("docs/README.md"));
    let pages = pages();
    assert!(!pages.is_empty(), "docs/ has pages");
    for page in &pages {
        assert!(
            guide.contains(&format!("include_str!(\"../docs/{page}\")")),
            "docs/{page} is not included in src/guide.rs, so its examples are not tested"
        );
        assert!(
            index.contains(&format!("({page})")),
            "docs/{page} is not linked from docs/README.md"
        );
    }
}

#[test]
fn every_block_is_labelled_and_none_is_ignored() {
    let blocks = all_blocks();
    assert!(blocks.iter().any(is_rust), "the guide has Rust examples");
    for b in &blocks {
        assert!(
            !b.info.is_empty(),
            "{}:{}: a code block without a language (rustdoc would compile it as Rust): \
             label it, e.g. ```text",
            b.page,
            b.line
        );
        let rustdoc_word = b.info.iter().any(|w| RUSTDOC_WORDS.contains(&w.as_str()));
        assert!(
            !rustdoc_word || is_rust(b),
            "{}:{}: a block with {:?} must be labelled `rust` first",
            b.page,
            b.line,
            b.info
        );
        assert!(
            !b.info.iter().any(|w| w == "ignore"),
            "{}:{}: an ignored block: every example must run (on the CPU, or as a GPU snippet)",
            b.page,
            b.line
        );
    }
}

#[test]
fn gpu_blocks_are_their_snippet_files_word_for_word() {
    let dir = root().join("tests/guide_snippets");
    let runner = read(&root().join("tests/guide_gpu.rs"));
    let list_start = runner
        .rfind("gpu_examples!(")
        .expect("the gpu_examples! list");
    let listed: BTreeSet<String> = runner[list_start + "gpu_examples!(".len()..]
        .split(')')
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let mut used = BTreeSet::new();
    for b in all_blocks()
        .iter()
        .filter(|b| is_rust(b) && b.info.iter().any(|w| w == "no_run"))
    {
        let name = snippet_name(b);
        let path = dir.join(format!("{name}.rs"));
        let file = read(&path);
        if file != b.text {
            let diff = file
                .lines()
                .zip(b.text.lines())
                .position(|(f, m)| f != m)
                .map_or("at the end".to_string(), |i| format!("at line {}", i + 1));
            panic!(
                "{}:{}: the block differs from tests/guide_snippets/{name}.rs ({diff} of the \
                 snippet); copy one onto the other",
                b.page, b.line
            );
        }
        assert!(
            listed.contains(&name),
            "tests/guide_snippets/{name}.rs is not in the gpu_examples! list of \
             tests/guide_gpu.rs, so it never runs"
        );
        used.insert(name);
    }
    let files: BTreeSet<String> = fs::read_dir(&dir)
        .expect("tests/guide_snippets/ exists")
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
        .collect();
    assert_eq!(
        files, used,
        "every snippet file is shown by exactly the pages that name it"
    );
    assert_eq!(
        listed, used,
        "tests/guide_gpu.rs runs exactly the guide's snippets"
    );
}

#[test]
fn the_block_parser_reads_fences_and_info_strings() {
    let md = "text\n```rust,no_run\n// x\nfn main() {}\n```\n\n  ```text\n  a\n   b\n  ```\n";
    let b = blocks("t.md", md);
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].line, b[0].info.as_slice()),
        (2, &["rust".to_string(), "no_run".into()][..])
    );
    assert_eq!(b[0].text, "// x\nfn main() {}\n");
    assert_eq!(b[1].text, "a\n b\n");
}
