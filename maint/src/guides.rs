//! The guides under `steps/` show code from the stages, never a copy typed by
//! hand: each code block follows a marker that says where it comes from, and
//! `cargo maint guides` writes the block again from the code. A test fails
//! when a block is stale.
//!
//! ```text
//! <!-- include: solutions/step02_status/number.rs fn fizz_buzz -->
//! <!-- changes: step01_crd step02_status -->
//! ```
//!
//! `include` shows one item (`fn`, `struct`, `enum`, `const` or `impl`, with
//! its doc comments and attributes); `changes` lists what a stage changes in
//! the previous one, file by file, as `diff -ruN` counts it. The fenced block
//! right after the marker is what gets written.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use similar::{ChangeTag, TextDiff};
use xtask::catalogue::guide_files;

/// `text` with every generated block written again from the code under `root`.
pub fn render(text: &str, root: &Path) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        out.push(line.to_string());
        index += 1;
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let (language, body) = match marker.split_once(": ") {
            Some(("include", what)) => ("rust", include(root, what)?),
            Some(("changes", what)) => ("text", changes(root, what)?),
            _ => continue,
        };
        // The fenced block after the marker is replaced.
        let fence = lines.get(index).copied().unwrap_or_default();
        if !fence.starts_with("```") {
            bail!("line {}: the marker `{marker}` is not followed by a ``` block", index);
        }
        let end = lines[index + 1..]
            .iter()
            .position(|line| line.starts_with("```"))
            .map(|offset| index + 1 + offset)
            .with_context(|| format!("line {}: the block after `{marker}` is not closed", index + 1))?;
        out.push(format!("```{language}"));
        out.extend(body.lines().map(str::to_string));
        out.push("```".to_string());
        index = end + 1;
    }
    let mut rendered = out.join("\n");
    if text.ends_with('\n') {
        rendered.push('\n');
    }
    Ok(rendered)
}

/// One item of a source file, `PATH fn NAME` (or struct, enum, const,
/// impl), or the lines between `// ANCHOR: NAME` and `// ANCHOR_END: NAME`,
/// `PATH anchor NAME`.
fn include(root: &Path, what: &str) -> Result<String> {
    let (path, item) = what
        .split_once(' ')
        .with_context(|| format!("`include: {what}` names no item: write `include: PATH fn NAME`"))?;
    let source = fs::read_to_string(root.join(path)).with_context(|| format!("cannot read {path}"))?;
    if let Some(anchor) = item.strip_prefix("anchor ") {
        return extract_anchor(&source, anchor).with_context(|| format!("{path} has no `// ANCHOR: {anchor}`"));
    }
    extract_item(&source, item).with_context(|| format!("{path} has no top-level `{item}`"))
}

/// The lines of `source` between `// ANCHOR: name` and `// ANCHOR_END:
/// name`, without the anchor lines of other fragments, and without the
/// indentation that they all share.
pub fn extract_anchor(source: &str, name: &str) -> Option<String> {
    let is_marker = |line: &str, marker: &str| line.trim() == format!("// {marker}: {name}");
    let lines: Vec<&str> = source.lines().collect();
    let start = lines.iter().position(|line| is_marker(line, "ANCHOR"))? + 1;
    let end = start + lines[start..].iter().position(|line| is_marker(line, "ANCHOR_END"))?;
    let kept: Vec<&str> = lines[start..end]
        .iter()
        .copied()
        .filter(|line| !line.trim_start().starts_with("// ANCHOR"))
        .collect();
    let indent = kept
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let dedented: Vec<&str> = kept.iter().map(|line| line.get(indent..).unwrap_or("")).collect();
    Some(dedented.join("\n"))
}

/// Every ```rust block of `text` that no `include` marker writes, by the
/// line it starts on: code typed into a guide by hand, which nothing compiles.
#[cfg(test)]
fn rust_blocks_typed_by_hand(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut typed = Vec::new();
    let mut in_block = false;
    for (index, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        if in_block {
            in_block = false;
            continue;
        }
        in_block = true;
        let generated = index > 0 && lines[index - 1].trim().starts_with("<!-- include: ");
        if line.trim_start() == "```rust" && !generated {
            typed.push(index + 1);
        }
    }
    typed
}

/// The top-level item `item` ("fn fizz_buzz", "struct NumberStatus"…) of
/// `source`, with the doc comments and attributes above it.
pub fn extract_item(source: &str, item: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let starts = |line: &str| {
        let line = line.strip_prefix("pub ").unwrap_or(line);
        let line = line.strip_prefix("async ").unwrap_or(line);
        line.strip_prefix(item)
            .is_some_and(|rest| rest.starts_with(['(', '<', ' ', ':', ';', '{']))
    };
    let first = lines.iter().position(|line| starts(line))?;
    // Upwards over doc comments and attributes (a multi-line attribute's
    // inner lines are indented, and its last line is `)]`).
    let mut start = first;
    while start > 0 {
        let above = lines[start - 1];
        let part_of_item =
            above.starts_with("///") || above.starts_with("#[") || above.starts_with(' ') || above.starts_with(")]");
        if !part_of_item {
            break;
        }
        start -= 1;
    }
    // Downwards to the end: a line that is `}` alone, or the first line ending in `;`.
    let end = if lines[first].trim_end().ends_with(';') {
        first
    } else {
        first + lines[first..].iter().position(|line| *line == "}")?
    };
    Some(lines[start..=end].join("\n"))
}

/// What `later` changes in `earlier` (two stages of `solutions/`), file by file.
fn changes(root: &Path, what: &str) -> Result<String> {
    let (earlier, later) = what
        .split_once(' ')
        .with_context(|| format!("`changes: {what}` names one stage: write `changes: EARLIER LATER`"))?;
    let earlier = root.join("solutions").join(earlier);
    let later = root.join("solutions").join(later);
    let mut names: Vec<PathBuf> = Vec::new();
    for dir in [&earlier, &later] {
        for name in source_files(dir)? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        let old = fs::read_to_string(earlier.join(&name)).unwrap_or_default();
        let new = fs::read_to_string(later.join(&name)).unwrap_or_default();
        if old == new {
            continue;
        }
        let (mut added, mut removed) = (0, 0);
        for change in TextDiff::from_lines(&old, &new).iter_all_changes() {
            match change.tag() {
                ChangeTag::Insert => added += 1,
                ChangeTag::Delete => removed += 1,
                ChangeTag::Equal => {}
            }
        }
        let note = if old.is_empty() { "  (new)" } else { "" };
        rows.push(format!("{:<14} +{added:<4} -{removed}{note}", name.display()));
    }
    Ok(rows.join("\n"))
}

/// The `.rs` files of a stage folder, relative to it.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "rs") {
            names.push(path.strip_prefix(dir)?.to_path_buf());
        }
    }
    Ok(names)
}

/// Writes every guide again; returns the ones that changed.
pub fn write_all(root: &Path) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for guide in guide_files(root)? {
        let text = fs::read_to_string(root.join(&guide))?;
        let rendered = render(&text, root).with_context(|| format!("in {}", guide.display()))?;
        if rendered != text {
            fs::write(root.join(&guide), rendered)?;
            changed.push(guide);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "use std::fmt;

/// Says hello.
#[inline]
pub fn hello(name: &str) -> String {
    format!(\"hello {name}\")
}

#[derive(Debug)]
#[kube(
    group = \"g\",
)]
pub struct Spec {
    pub value: i64,
}

pub const LIMIT: usize = 3;
";

    #[test]
    fn an_item_comes_with_its_doc_comments_and_attributes() {
        let hello = extract_item(SOURCE, "fn hello").unwrap();
        assert!(hello.starts_with("/// Says hello.\n#[inline]\npub fn hello"), "{hello}");
        assert!(hello.ends_with("}"));
        let spec = extract_item(SOURCE, "struct Spec").unwrap();
        assert!(spec.starts_with("#[derive(Debug)]\n#[kube(\n    group"), "{spec}");
        assert_eq!(
            extract_item(SOURCE, "const LIMIT").unwrap(),
            "pub const LIMIT: usize = 3;"
        );
        assert!(extract_item(SOURCE, "fn goodbye").is_none());
    }

    #[test]
    fn a_marked_block_is_written_from_the_code() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.rs"), SOURCE).unwrap();
        let guide = "Text\n<!-- include: a.rs const LIMIT -->\n```rust\nstale\n```\nAfter\n";
        let rendered = render(guide, dir.path()).unwrap();
        assert_eq!(
            rendered,
            "Text\n<!-- include: a.rs const LIMIT -->\n```rust\npub const LIMIT: usize = 3;\n```\nAfter\n"
        );
        assert_eq!(render(&rendered, dir.path()).unwrap(), rendered);
    }

    #[test]
    fn an_anchored_fragment_comes_without_its_markers_and_indentation() {
        let source = "fn f() {\n    // ANCHOR: body\n    let a = 1;\n    // ANCHOR: inner\n    if a > 0 {\n        g();\n    }\n    // ANCHOR_END: inner\n    // ANCHOR_END: body\n}\n";
        assert_eq!(
            extract_anchor(source, "body").unwrap(),
            "let a = 1;\nif a > 0 {\n    g();\n}"
        );
        assert_eq!(extract_anchor(source, "inner").unwrap(), "if a > 0 {\n    g();\n}");
        assert!(extract_anchor(source, "other").is_none());
    }

    #[test]
    fn a_rust_block_without_an_include_marker_is_found() {
        let text = "<!-- include: a.rs fn f -->\n```rust\nfn f() {}\n```\n\n```rust\nlet x = 1;\n```\n```sh\nls\n```\n";
        assert_eq!(rust_blocks_typed_by_hand(text), [6]);
    }

    /// Every piece of Rust that a guide shows comes from the code, which
    /// the build compiles: an attendee never copies code that does not build.
    #[test]
    fn every_rust_block_of_the_guides_is_written_from_the_code() {
        let root = crate::repository_root();
        for guide in guide_files(&root).unwrap() {
            let text = fs::read_to_string(root.join(&guide)).unwrap();
            let typed = rust_blocks_typed_by_hand(&text);
            assert!(
                typed.is_empty(),
                "{} has Rust blocks typed by hand, at lines {typed:?}: include them from the code \
                 (`<!-- include: PATH fn NAME -->` or `<!-- include: PATH anchor NAME -->`)",
                guide.display()
            );
        }
    }

    #[test]
    fn every_guide_shows_the_code_as_it_is() {
        let root = crate::repository_root();
        let root = root.as_path();
        for guide in guide_files(root).unwrap() {
            let text = fs::read_to_string(root.join(&guide)).unwrap();
            let rendered = render(&text, root).unwrap_or_else(|err| panic!("{}: {err:#}", guide.display()));
            assert!(
                rendered == text,
                "{} shows code that is not in the repository any more: run `cargo maint guides`",
                guide.display()
            );
        }
    }
}
