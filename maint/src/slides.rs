//! The slides (`slides/en.md`, `slides/ja.md`) are Markdown rendered by Marp
//! (`@marp-team/marp-cli`, pinned in `slides/package-lock.json`) with the
//! system's Chromium, to HTML, PDF and one PNG per slide.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The languages of the deck: `slides/<language>.md`.
pub const LANGUAGES: [&str; 2] = ["en", "ja"];

/// A browser Marp can drive: `CHROME_PATH`, else the first of the usual names on PATH.
pub fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROME_PATH") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Marp, as `npm ci` installs it in `slides/node_modules`.
pub fn marp(slides: &Path) -> Option<PathBuf> {
    let marp = slides.join("node_modules").join(".bin").join("marp");
    marp.is_file().then_some(marp)
}

/// Why the deck of `language` cannot be rendered here, with the fix; `None`
/// if it can. Japanese needs a Japanese font: without one Chromium draws every
/// character as an empty box, and the render still "succeeds".
pub fn missing_for(slides: &Path, language: &str) -> Option<String> {
    if let Some(why) = missing(slides) {
        return Some(why);
    }
    (language == "ja" && !has_japanese_font()).then(|| {
        "no Japanese font is installed, so the Japanese slides would show empty boxes: install one \
         (Debian: `apt-get install fonts-noto-cjk`)"
            .to_string()
    })
}

/// Whether fontconfig knows a font for Japanese; true where there is no
/// fontconfig to ask (macOS and Windows bring Japanese fonts with the system).
pub fn has_japanese_font() -> bool {
    match Command::new("fc-list").arg(":lang=ja").output() {
        Ok(output) if output.status.success() => !output.stdout.is_empty(),
        _ => true,
    }
}

/// Why the slides cannot be rendered here, with the fix; `None` if they can.
pub fn missing(slides: &Path) -> Option<String> {
    if marp(slides).is_none() {
        return Some("Marp is not installed: run `npm ci` in slides/ (or `cargo maint prepare`)".to_string());
    }
    if browser().is_none() {
        return Some(
            "no browser to render with: install Chromium (Debian: `apt-get install chromium`) or set CHROME_PATH"
                .to_string(),
        );
    }
    None
}

/// How many slides a Marp deck has: the `---` lines after the front matter, plus one.
pub fn slide_count(markdown: &str) -> usize {
    let mut lines = markdown.lines();
    let front_matter = markdown.starts_with("---");
    if front_matter {
        lines.next();
        for line in lines.by_ref() {
            if line == "---" {
                break;
            }
        }
    }
    let mut in_code = false;
    let mut count = 1;
    for line in lines {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if line == "---" && !in_code {
            count += 1;
        }
    }
    count
}

/// What a render writes: `<language>.html`, `<language>.pdf`, or
/// `<language>.NNN.png`, one PNG per slide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
    Png,
}

impl Format {
    /// Everything an instructor hands out or projects (`cargo maint slides`).
    pub const ALL: [Format; 3] = [Format::Html, Format::Pdf, Format::Png];

    fn flag_and_extension(self) -> (&'static str, &'static str) {
        match self {
            Format::Html => ("--html", "html"),
            Format::Pdf => ("--pdf", "pdf"),
            Format::Png => ("--images=png", "png"),
        }
    }
}

/// Renders `slides/<language>.md` into `out` in each of `formats`. Returns
/// how many PNGs (slides) `out` holds for `language` afterwards.
pub fn render(slides: &Path, language: &str, out: &Path, formats: &[Format]) -> Result<usize> {
    if let Some(why) = missing_for(slides, language) {
        bail!("{why}");
    }
    let marp = marp(slides).context("no marp")?;
    let browser = browser().context("no browser")?;
    std::fs::create_dir_all(out)?;
    let source = slides.join(format!("{language}.md"));
    for (flag, file) in formats.iter().map(|format| format.flag_and_extension()) {
        let output = Command::new(&marp)
            .current_dir(slides)
            .env("CHROME_PATH", &browser)
            .args(["--allow-local-files", "--html", flag])
            .arg(&source)
            .arg("-o")
            .arg(out.join(format!("{language}.{file}")))
            .output()
            .context("cannot run marp")?;
        if !output.status.success() {
            bail!(
                "marp could not render {} ({flag}): {}",
                source.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let pngs = std::fs::read_dir(out)?
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{language}.")) && name.ends_with(".png")
        })
        .count();
    Ok(pngs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_are_counted_by_their_separators_outside_code() {
        let deck = "---\nmarp: true\n---\n\n# One\n\n---\n\n# Two\n\n```yaml\n---\n```\n\n---\n\n# Three\n";
        assert_eq!(slide_count(deck), 3);
    }

    #[test]
    fn both_languages_have_the_same_slides() {
        let root = crate::repository_root().join("slides");
        let counts: Vec<usize> = LANGUAGES
            .iter()
            .map(|language| slide_count(&std::fs::read_to_string(root.join(format!("{language}.md"))).unwrap()))
            .collect();
        assert!(counts[0] > 10, "{counts:?}");
        assert!(
            counts.iter().all(|count| *count == counts[0]),
            "slides per language: {counts:?}"
        );
    }

    /// The paths the slides name (guides, samples, workbench folders) exist,
    /// and each stage slide names its guide in the deck's language.
    #[test]
    fn the_slides_name_only_files_that_exist() {
        let root = crate::repository_root();
        for language in LANGUAGES {
            let deck = std::fs::read_to_string(root.join("slides").join(format!("{language}.md"))).unwrap();
            let mut named = 0;
            for word in deck.split(|c: char| c.is_whitespace() || "`()".contains(c)) {
                // A path is ASCII; what follows it (Japanese punctuation, an anchor) is not part of it.
                let end = word
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
                    .unwrap_or(word.len());
                let path = word[..end].trim_end_matches(['.', '/']);
                let is_path = ["steps/", "exercises/", "solutions/", "diagrams/"]
                    .iter()
                    .any(|prefix| path.starts_with(prefix));
                if !is_path || path.contains('…') || path.contains("NN") {
                    continue;
                }
                let file = if path.starts_with("diagrams/") {
                    root.join("slides").join(path)
                } else {
                    root.join(path)
                };
                assert!(file.exists(), "slides/{language}.md names {path}, which does not exist");
                named += 1;
            }
            assert!(named >= 8, "slides/{language}.md names only {named} files");
            for guide in crate::catalogue::GUIDES {
                let guide = guide.replace("steps/en/", &format!("steps/{language}/"));
                assert!(deck.contains(&guide), "slides/{language}.md does not point to {guide}");
            }
        }
    }

    /// A clock time of the plan, `1:05`, in minutes.
    fn minutes(clock: &str) -> Option<u32> {
        let (hours, minutes) = clock.trim().split_once(':')?;
        Some(hours.parse::<u32>().ok()? * 60 + minutes.parse::<u32>().ok()?)
    }

    /// The rows `| start | minutes | …` of the first table in `text` whose
    /// rows start with a clock time: (start, minutes, the rest of the row).
    fn timed_rows(text: &str) -> Vec<(u32, u32, String)> {
        text.lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.strip_prefix('|')?.split('|').collect();
                let start = minutes(cells.first()?)?;
                let length = cells.get(1)?.trim().parse().ok()?;
                Some((start, length, cells[2..].join("|")))
            })
            .collect()
    }

    /// The speaker notes `<!-- 0:28 (3 min)` (or `（3 分）`): (start, minutes).
    fn timed_notes(deck: &str) -> Vec<(u32, u32)> {
        deck.lines()
            .filter_map(|line| {
                let rest = line.trim().strip_prefix("<!-- ")?;
                let (clock, rest) = rest.split_once([' ', '（', '.', '。'])?;
                let start = minutes(clock)?;
                let rest = rest.trim_start_matches(['(', ' ']);
                let length = rest.split([' ', '分']).next()?.parse().ok()?;
                Some((start, length))
            })
            .collect()
    }

    /// The plan of the session (steps/LANG/README.md), the slides' table and
    /// speaker notes, and each guide's own minutes agree: one schedule that
    /// adds up to two hours, in both languages.
    #[test]
    fn the_plan_the_slides_and_the_guides_keep_one_schedule() {
        let root = crate::repository_root();
        let stage_minutes_in = |text: &str| -> Option<u32> {
            let at = text
                .find("About ")
                .map(|at| at + 6)
                .or_else(|| text.find("約 ").map(|at| at + "約 ".len()))?;
            text[at..].split([' ', '\n']).next()?.parse().ok()
        };
        for language in LANGUAGES {
            let plan = timed_rows(&std::fs::read_to_string(root.join(format!("steps/{language}/README.md"))).unwrap());
            assert!(plan.len() >= 6, "steps/{language}/README.md: no plan table");
            for pair in plan.windows(2) {
                assert_eq!(
                    pair[0].0 + pair[0].1,
                    pair[1].0,
                    "steps/{language}/README.md: {pair:?} do not follow each other"
                );
            }
            let (last_start, last_length, _) = plan.last().unwrap();
            assert_eq!(
                last_start + last_length,
                120,
                "steps/{language}/README.md: the plan is not two hours"
            );
            // Each stage's guide says the minutes that the plan gives it.
            for (number, guide) in (1..).zip(crate::catalogue::GUIDES) {
                let guide = guide.replace("steps/en/", &format!("steps/{language}/"));
                let file = guide.rsplit('/').next().unwrap().to_string();
                let row = plan
                    .iter()
                    .find(|(_, _, rest)| rest.contains(&format!("({file})")))
                    .unwrap_or_else(|| panic!("steps/{language}/README.md: no row for stage {number}"));
                let text = std::fs::read_to_string(root.join(&guide)).unwrap();
                assert_eq!(
                    stage_minutes_in(&text),
                    Some(row.1),
                    "{guide}: its minutes are not the plan's"
                );
            }
            let deck = std::fs::read_to_string(root.join(format!("slides/{language}.md"))).unwrap();
            // The slides' table: each row is one of the plan's.
            let table = timed_rows(&deck);
            assert!(table.len() >= 5, "slides/{language}.md: no table of the day");
            for (start, length, _) in &table {
                assert!(
                    plan.iter().any(|(s, l, _)| s == start && l == length),
                    "slides/{language}.md: the row at {start} min ({length} min) is not in the plan"
                );
            }
            // The speaker notes follow each other, over the plan's break,
            // and end with the session.
            let notes = timed_notes(&deck);
            assert!(notes.len() >= 10, "slides/{language}.md: {} timed notes", notes.len());
            assert_eq!(notes[0].0, 0);
            for pair in notes.windows(2) {
                let end = pair[0].0 + pair[0].1;
                let over_a_break = plan.iter().any(|(s, l, _)| *s == end && pair[1].0 == end + l);
                assert!(
                    pair[1].0 == end || over_a_break,
                    "slides/{language}.md: a note at {} min follows one that ends at {end} min",
                    pair[1].0
                );
            }
            let (start, length) = notes.last().unwrap();
            assert_eq!(
                start + length,
                120,
                "slides/{language}.md: the notes do not end at 2:00"
            );
        }
    }

    #[test]
    fn notes_and_rows_are_read_with_their_times() {
        assert_eq!(
            timed_notes("<!-- 1:03 (4 min). Text -->\n<!-- 0:08. Text -->\n<!-- 0:28（3 分）。テキスト -->"),
            [(63, 4), (28, 3)]
        );
        assert_eq!(timed_rows("| 0:58 | 5 | Break | |\n| time | minutes |")[0].0, 58);
    }
}
