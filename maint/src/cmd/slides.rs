//! `cargo maint slides`: both decks rendered to slides/out.

use std::process::ExitCode;

use anyhow::Result;

use crate::repository_root;

/// `cargo maint slides`: both languages to slides/out (HTML, PDF, one PNG a slide).
pub fn run() -> Result<ExitCode> {
    let slides = repository_root().join("slides");
    let out = slides.join("out");
    for language in crate::slides::LANGUAGES {
        let count = crate::slides::render(&slides, language, &out, &crate::slides::Format::ALL)?;
        println!("slides/out/{language}.html, {language}.pdf and {count} PNGs");
    }
    Ok(ExitCode::SUCCESS)
}
