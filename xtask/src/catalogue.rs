//! The workshop's facts, said once: its stages and guides, the API group of
//! its resources, their CRDs, and how the controllers name the children
//! they create. The tooling and the tests read them from here; a test that
//! spells one out on purpose (a manifest as an attendee writes it) says so.

/// The project's name: the controller's field manager and Lease, and the
/// prefix of the folders the tooling makes.
pub const PROJECT: &str = "math-controller";

/// The stages, as `cargo run --example` names them.
pub const STAGES: [&str; 4] = ["step01_crd", "step02_status", "step03_tuple", "step04_fermat"];

/// The guide of each stage, as the `todo!` messages link to it.
pub const GUIDES: [&str; 4] = [
    "steps/en/01-crd.md",
    "steps/en/02-status.md",
    "steps/en/03-tuple.md",
    "steps/en/04-fermat.md",
];

/// The API group of Number, Tuple and Fermat.
pub const GROUP: &str = "math.workshop.example";

/// Their API version.
pub const VERSION: &str = "v1beta1";

/// The kinds, in the order the stages bring them in (Number in stage 1,
/// Tuple in 3, Fermat in 4).
pub const KINDS: [&str; 3] = ["Number", "Tuple", "Fermat"];

/// The CRDs of [`KINDS`], as `kubectl get crd` names them.
pub const CRDS: [&str; 3] = [
    "numbers.math.workshop.example",
    "tuples.math.workshop.example",
    "fermats.math.workshop.example",
];

/// The oldest Kubernetes minor version whose API server the stages support
/// (kube 5 with k8s-openapi's `v1_33`).
pub const OLDEST_SERVER_MINOR: u32 = 33;

/// The stage that `name` means: `step02`, `step02_status`, `2` or `02`.
pub fn stage_named(name: &str) -> Option<&'static str> {
    let number = name.trim_start_matches("step").split('_').next().unwrap_or_default();
    let number: usize = number.parse().ok()?;
    STAGES
        .get(number.checked_sub(1)?)
        .copied()
        .filter(|stage| name.len() <= 2 || stage.starts_with(name) || name.starts_with(&stage[..6]))
}

/// The Tuple that Fermat `fermat` of number `n` creates for the pair
/// `(i, n - i)`, as stage 4 names it.
pub fn tuple_name(fermat: &str, i: u64, n: u64) -> String {
    format!("{fermat}-{i}-and-{}", n - i)
}

/// The Number that Tuple `tuple` creates for its element at `index`, as
/// stage 3 names it.
pub fn number_name(tuple: &str, index: usize) -> String {
    format!("{tuple}-{index}")
}

/// The folder that holds the guides, one subfolder per language.
pub const GUIDES_DIR: &str = "steps";

/// Every guide (a `.md` file below `steps/`), relative to `root`, sorted.
pub fn guide_files(root: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let dir = root.join(GUIDES_DIR);
    if !dir.is_dir() {
        anyhow::bail!("cannot read {}", dir.display());
    }
    let mut found: Vec<std::path::PathBuf> = crate::files_below(&dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .filter_map(|path| path.strip_prefix(root).ok().map(std::path::Path::to_path_buf))
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_can_be_named_in_several_ways() {
        for name in ["step02", "step02_status", "2", "02"] {
            assert_eq!(stage_named(name), Some("step02_status"), "{name}");
        }
        assert_eq!(stage_named("step05"), None);
        assert_eq!(stage_named("0"), None);
        assert_eq!(stage_named("status"), None);
    }

    #[test]
    fn the_crds_are_those_of_the_kinds() {
        let derived: Vec<String> = KINDS
            .iter()
            .map(|kind| format!("{}s.{GROUP}", kind.to_lowercase()))
            .collect();
        assert_eq!(derived, CRDS);
    }

    #[test]
    fn children_are_named_as_the_stages_name_them() {
        assert_eq!(tuple_name("f13", 4, 13), "f13-4-and-9");
        assert_eq!(number_name("f13-4-and-9", 1), "f13-4-and-9-1");
    }
}
