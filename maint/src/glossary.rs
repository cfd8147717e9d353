//! The Japanese texts keep to one term per concept: `steps/ja/glossary.md`
//! lists the terms to use and the variants to avoid, and a test fails when
//! a Japanese text uses an avoided variant.
//!
//! Each table row of the glossary whose third column holds `` `…` `` terms
//! is a rule: the terms of its second column are taken out of a line first,
//! then any term of the third column left in it is a finding. So
//! 「コントロールプレーン」 passes and a bare 「プレーン」 does not.
//!
//! Only prose is read: fenced code blocks, inline code and link targets are
//! left out, and in the tools' source only the string literals that hold
//! Japanese.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// The glossary, relative to the repository's root.
pub const GLOSSARY: &str = "steps/ja/glossary.md";

/// One row of the glossary: the terms to use and the variants to avoid.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub chosen: Vec<String>,
    pub avoided: Vec<String>,
}

/// The `` `…` `` terms of a table cell.
fn terms(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|term| !term.is_empty())
        .collect()
}

/// The rules of the glossary's tables.
pub fn rules(glossary: &str) -> Vec<Rule> {
    glossary
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            let rule = Rule {
                chosen: terms(cells.get(1)?),
                avoided: terms(cells.get(2)?),
            };
            (!rule.avoided.is_empty()).then_some(rule)
        })
        .collect()
}

/// Whether `c` is written in Japanese (kana, kanji, the long-vowel mark,
/// Japanese brackets and punctuation).
pub fn is_japanese(c: char) -> bool {
    matches!(c, '\u{3000}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}' | '\u{ff01}'..='\u{ff60}')
}

/// `line` without its inline code spans and the targets of its links.
fn without_code_and_targets(line: &str) -> String {
    let mut out = String::new();
    for (index, piece) in line.split('`').enumerate() {
        if index % 2 == 0 {
            out.push_str(piece);
        }
    }
    // "[text](target)": keep the text.
    let mut kept = String::new();
    let mut rest = out.as_str();
    while let Some(at) = rest.find("](") {
        kept.push_str(&rest[..at + 1]);
        rest = &rest[at + 2..];
        rest = rest.find(')').map_or("", |end| &rest[end + 1..]);
    }
    kept.push_str(rest);
    kept
}

/// The prose of a file, line by line (1-based numbers), by the kind of file.
pub fn prose(path: &str, text: &str) -> Vec<(usize, String)> {
    let lines = text.lines().enumerate().map(|(index, line)| (index + 1, line));
    if path.ends_with(".svg") {
        // The text between tags.
        return lines
            .map(|(number, line)| {
                let text: String = line
                    .split('<')
                    .filter_map(|piece| piece.split_once('>').map(|(_, text)| text))
                    .collect();
                (number, text)
            })
            .collect();
    }
    if path.ends_with(".rs") {
        return lines
            .filter_map(|(number, line)| {
                let literals: Vec<&str> = line
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|literal| literal.chars().any(is_japanese))
                    .collect();
                (!literals.is_empty()).then(|| (number, without_code_and_targets(&literals.join(" "))))
            })
            .collect();
    }
    if path.ends_with(".txt") {
        // Hints: "STAGE CHECK = HINT [N.M]"; the key is code.
        return lines
            .map(|(number, line)| {
                let hint = line.split_once(" = ").map_or(line, |(_, hint)| hint);
                (number, without_code_and_targets(hint))
            })
            .collect();
    }
    let mut in_code = false;
    lines
        .filter_map(|(number, line)| {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                return None;
            }
            (!in_code).then(|| (number, without_code_and_targets(line)))
        })
        .collect()
}

/// What `rules` find in the prose of `text` (a file at `path`), one sentence
/// each: the place, the variant and the term to use instead.
pub fn findings(rules: &[Rule], path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in prose(path, text) {
        for rule in rules {
            let mut left = line.clone();
            for chosen in &rule.chosen {
                left = left.replace(chosen.as_str(), "\u{0}");
            }
            for avoided in rule.avoided.iter().filter(|avoided| left.contains(avoided.as_str())) {
                let instead = if rule.chosen.is_empty() {
                    "leave it out".to_string()
                } else {
                    format!("write 「{}」", rule.chosen.join("」 or 「"))
                };
                found.push(format!(
                    "{path}:{number}: 「{avoided}」 is an avoided variant: {instead} ({GLOSSARY})"
                ));
            }
        }
        let chars: Vec<char> = line.chars().collect();
        for pair in chars.windows(3) {
            if is_japanese(pair[0]) && matches!(pair[1], '?' | '!') && pair[2] != '[' {
                found.push(format!(
                    "{path}:{number}: a half-width `{}` after Japanese: write the full-width one ({GLOSSARY})",
                    pair[1]
                ));
            }
        }
        if let Some(last) = chars.len().checked_sub(2)
            && is_japanese(chars[last])
            && matches!(chars[last + 1], '?' | '!')
        {
            found.push(format!(
                "{path}:{number}: a half-width `{}` after Japanese: write the full-width one ({GLOSSARY})",
                chars[last + 1]
            ));
        }
    }
    found
}

/// The Japanese texts below `root`: the README, the guides (not the
/// glossary itself), the slides, the diagrams, the hints and the tools'
/// source (not this file, whose tests name the variants).
pub fn japanese_files(root: &Path) -> Vec<String> {
    let mut files = vec![
        "README.ja.md".to_string(),
        "slides/ja.md".to_string(),
        "exercises/hints.ja.txt".to_string(),
    ];
    let below = |dir: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut found: Vec<String> = xtask::files_below(&root.join(dir))
            .iter()
            .filter_map(|path| path.strip_prefix(root).ok())
            .map(|path| path.to_string_lossy().replace('\\', "/"))
            .filter(|path| keep(path))
            .collect();
        found.sort();
        found
    };
    files.extend(below("steps/ja", &|path| path.ends_with(".md") && path != GLOSSARY));
    files.extend(below("slides/diagrams", &|path| path.ends_with("-ja.svg")));
    files.extend(below("xtask/src", &|path| {
        path.ends_with(".rs") && !path.ends_with("/glossary.rs")
    }));
    files
}

/// Every finding in the Japanese texts below `root`.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let glossary = fs::read_to_string(root.join(GLOSSARY)).with_context(|| format!("cannot read {GLOSSARY}"))?;
    let rules = rules(&glossary);
    let mut found = Vec::new();
    for file in japanese_files(root) {
        let text = fs::read_to_string(root.join(&file)).with_context(|| format!("cannot read {file}"))?;
        found.extend(findings(&rules, &file, &text));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOSSARY_SAMPLE: &str = "\
| English | 使う語 | 避ける語 | 注記 |
|---|---|---|---|
| control plane | `コントロールプレーン` | `プレーン` `制御プレーン` | 略さない |
| difference | `差分` | | |
| you | | `あなた` | |
";

    #[test]
    fn the_rows_with_avoided_variants_are_the_rules() {
        assert_eq!(
            rules(GLOSSARY_SAMPLE),
            [
                Rule {
                    chosen: vec!["コントロールプレーン".to_string()],
                    avoided: vec!["プレーン".to_string(), "制御プレーン".to_string()],
                },
                Rule {
                    chosen: vec![],
                    avoided: vec!["あなた".to_string()],
                },
            ]
        );
    }

    #[test]
    fn a_chosen_term_passes_and_its_part_alone_does_not() {
        let rules = rules(GLOSSARY_SAMPLE);
        let text = "コントロールプレーンを起動します。\nプレーンを止めます。\n```sh\nプレーン # code\n```\n`プレーン` と [ガイド](あなた.md)\n";
        assert_eq!(
            findings(&rules, "a.md", text),
            ["a.md:2: 「プレーン」 is an avoided variant: write 「コントロールプレーン」 (steps/ja/glossary.md)"]
        );
        assert_eq!(
            findings(&rules, "a.md", "あなたのコード\n"),
            ["a.md:1: 「あなた」 is an avoided variant: leave it out (steps/ja/glossary.md)"]
        );
    }

    #[test]
    fn a_half_width_question_mark_after_japanese_is_found() {
        let found = findings(&[], "a.md", "平方数?\n![図](x.svg)\nIs it? はい\n");
        assert_eq!(
            found,
            ["a.md:1: a half-width `?` after Japanese: write the full-width one (steps/ja/glossary.md)"]
        );
    }

    #[test]
    fn only_the_japanese_literals_of_the_source_and_the_text_of_a_diagram_count() {
        let rules = rules(GLOSSARY_SAMPLE);
        let source = "let plane = \"プレーン\"; // プレーン\nlet x = \"plane\";\n";
        assert_eq!(findings(&rules, "x.rs", source).len(), 1);
        let svg = "<text x=\"1\" class=\"プレーン\">コントロールプレーン</text>\n<text>プレーン</text>\n";
        assert_eq!(findings(&rules, "d-ja.svg", svg).len(), 1);
        let hints = "step02 a_plane_check = コントロールプレーン `プレーン` [2.1]\n";
        assert!(findings(&rules, "hints.ja.txt", hints).is_empty());
    }

    /// The Japanese texts of this repository use no avoided variant.
    #[test]
    fn no_japanese_text_uses_an_avoided_variant() {
        let found = check(&crate::repository_root()).unwrap();
        assert!(found.is_empty(), "{} findings:\n{}", found.len(), found.join("\n"));
    }
}
