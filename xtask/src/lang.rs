//! The language the tools speak to the attendee: English, or Japanese under
//! a Japanese locale.
//!
//! The first of `MATH_CONTROLLER_LANG`, `LC_ALL`, `LC_MESSAGES` and `LANG`
//! that is set and not empty decides: a value starting with `ja` means
//! Japanese, any other English. `MATH_CONTROLLER_LANG=en` (or `ja`) forces a
//! language without touching the locale of other programs.
//!
//! Messages are written in both languages side by side with [`say!`]; a
//! function whose output a test compares takes a [`Language`] instead of
//! reading the environment.
//!
//! [`say!`]: crate::say

/// A language the tools can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    English,
    Japanese,
}

/// The variables that choose the language, the first set one winning.
pub const VARIABLES: [&str; 4] = ["MATH_CONTROLLER_LANG", "LC_ALL", "LC_MESSAGES", "LANG"];

impl Language {
    /// Both languages, English first.
    pub const ALL: [Language; 2] = [Language::English, Language::Japanese];

    /// The language of the reader, from the environment.
    pub fn of_reader() -> Language {
        Language::from_values(VARIABLES.iter().map(|name| std::env::var(name).ok()))
    }

    /// The language that the first set, non-empty value names.
    pub fn from_values(values: impl IntoIterator<Item = Option<String>>) -> Language {
        let chosen = values
            .into_iter()
            .flatten()
            .find(|value| !value.is_empty())
            .unwrap_or_default();
        if chosen.to_ascii_lowercase().starts_with("ja") {
            Language::Japanese
        } else {
            Language::English
        }
    }

    /// The folder of this language's guides below `steps/`.
    pub fn guides(self) -> &'static str {
        match self {
            Language::English => "steps/en/",
            Language::Japanese => "steps/ja/",
        }
    }

    /// The language of a guide, from its path (`steps/ja/…` is Japanese).
    pub fn of_guide(path: &str) -> Language {
        if path.replace('\\', "/").contains(Language::Japanese.guides()) {
            Language::Japanese
        } else {
            Language::English
        }
    }

    /// `en` or `ja`, as in file names.
    pub fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Japanese => "ja",
        }
    }
}

/// Whether the reader reads Japanese (see [`Language::of_reader`]).
pub fn japanese() -> bool {
    Language::of_reader() == Language::Japanese
}

/// `text` with the guide links of the other language turned into the
/// reader's, and a pair `steps/en/…#25 · steps/ja/…#25` (as a `todo!`
/// names them) shortened to the reader's guide.
pub fn links_for(language: Language, text: &str) -> String {
    let (own, other) = match language {
        Language::English => (Language::English.guides(), Language::Japanese.guides()),
        Language::Japanese => (Language::Japanese.guides(), Language::English.guides()),
    };
    let mut out = text.to_string();
    // "steps/en/X#N · steps/ja/X#N": keep the reader's half.
    const BETWEEN: &str = " · ";
    while let Some(at) = out.find(" · steps/") {
        let second_start = at + BETWEEN.len();
        let before_start = out[..at].rfind("steps/").unwrap_or(at);
        let after_end = out[second_start..]
            .find(|c: char| c.is_whitespace() || c == ')' || c == ',')
            .map_or(out.len(), |end| second_start + end);
        let first = out[before_start..at].to_string();
        let second = out[second_start..after_end].to_string();
        let kept = if second.starts_with(own) { second } else { first };
        out.replace_range(before_start..after_end, &kept);
    }
    out.replace(other, own)
}

/// A message in the reader's language: `say!("English {x}", "日本語 {x}")`,
/// with the arguments of `format!` after the two texts.
#[macro_export]
macro_rules! say {
    ($english:literal, $japanese:literal $(,)?) => {
        if $crate::lang::japanese() { format!($japanese) } else { format!($english) }
    };
    ($english:literal, $japanese:literal, $($argument:tt)*) => {
        if $crate::lang::japanese() {
            format!($japanese, $($argument)*)
        } else {
            format!($english, $($argument)*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|value| value.map(str::to_string)).collect()
    }

    #[test]
    fn the_first_variable_set_chooses_the_language() {
        assert_eq!(
            Language::from_values(values(&[None, None, None, Some("ja_JP.UTF-8")])),
            Language::Japanese
        );
        assert_eq!(
            Language::from_values(values(&[None, Some("C"), None, Some("ja_JP.UTF-8")])),
            Language::English
        );
        assert_eq!(
            Language::from_values(values(&[Some("ja"), Some("C.UTF-8"), None, None])),
            Language::Japanese
        );
        assert_eq!(
            Language::from_values(values(&[Some("en"), None, None, Some("ja_JP.UTF-8")])),
            Language::English
        );
        assert_eq!(
            Language::from_values(values(&[Some(""), None, None, Some("ja_JP.eucJP")])),
            Language::Japanese
        );
        assert_eq!(
            Language::from_values(values(&[None, None, None, None])),
            Language::English
        );
    }

    #[test]
    fn a_pair_of_guide_links_keeps_the_readers_half() {
        let panic = "not yet implemented: 2.4: compute, see steps/en/02-status.md#24 · steps/ja/02-status.md#24";
        assert_eq!(
            links_for(Language::English, panic),
            "not yet implemented: 2.4: compute, see steps/en/02-status.md#24"
        );
        assert_eq!(
            links_for(Language::Japanese, panic),
            "not yet implemented: 2.4: compute, see steps/ja/02-status.md#24"
        );
        assert_eq!(
            links_for(
                Language::Japanese,
                "the cluster prints x where steps/en/02-status.md shows y"
            ),
            "the cluster prints x where steps/ja/02-status.md shows y"
        );
        assert_eq!(
            links_for(
                Language::English,
                "(see steps/en/03-tuple.md#33 · steps/ja/03-tuple.md#33)"
            ),
            "(see steps/en/03-tuple.md#33)"
        );
    }

    #[test]
    fn a_guide_path_tells_its_language() {
        assert_eq!(Language::of_guide("steps/ja/03-tuple.md"), Language::Japanese);
        assert_eq!(Language::of_guide("steps/en/03-tuple.md"), Language::English);
    }
}
