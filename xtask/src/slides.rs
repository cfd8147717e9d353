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
        return Some("Marp is not installed: run `npm ci` in slides/ (or `cargo xtask prepare`)".to_string());
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
    /// Everything an instructor hands out or projects (`cargo xtask slides`).
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
}
