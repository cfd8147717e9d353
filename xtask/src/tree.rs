//! `cargo xtask tree`: the Fermat → Tuple → Number ownership tree of one
//! namespace, drawn from the objects' controller ownerReferences and kept
//! current by watches.
//!
//! This module is the pure part, tested on fixed input: the rows of the tree
//! with their colours and highlights, the counts, and whether everything has
//! settled. `tree_live.rs` watches the cluster and draws these rows.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use kube::api::DynamicObject;
use serde_json::Value;

use crate::catalogue;
use crate::lang::Language;

/// The workshop's kinds, parents first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Fermat,
    Tuple,
    Number,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Fermat, Kind::Tuple, Kind::Number];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Fermat => "Fermat",
            Kind::Tuple => "Tuple",
            Kind::Number => "Number",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Fermat => "fermats",
            Kind::Tuple => "tuples",
            Kind::Number => "numbers",
        }
    }
}

/// One object, as much of it as the tree shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    pub uid: String,
    /// The uid in its controller ownerReference, if it has one.
    pub controller: Option<String>,
    pub generation: Option<i64>,
    pub spec: Value,
    pub status: Value,
}

impl Object {
    pub fn from_dynamic(kind: Kind, object: &DynamicObject) -> Object {
        let meta = &object.metadata;
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone());
        Object {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            controller,
            generation: meta.generation,
            spec: object.data["spec"].clone(),
            status: object.data["status"].clone(),
        }
    }

    /// Whether its status was written for its current spec.
    pub fn current(&self) -> bool {
        let observed = self.status["observedGeneration"].as_i64();
        observed.is_some() && observed == self.generation
    }
}

/// What happened to an object a moment ago, for a highlight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Created,
    Changed,
    Deleted,
}

/// How a piece of a row is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// The tree's lines and the kind.
    Dim,
    Name,
    True,
    False,
    /// No status for the current spec yet.
    Pending,
    /// Something the user should look at: a name clash, a problem.
    Warning,
    Created,
    Changed,
    Deleted,
}

/// One line of the tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub uid: String,
    pub depth: usize,
    /// How many objects hang below it (children, theirs, and so on).
    pub below: usize,
    pub collapsed: bool,
    pub spans: Vec<(String, Tone)>,
}

impl Row {
    pub fn text(&self) -> String {
        self.spans.iter().map(|(text, _)| text.as_str()).collect()
    }
}

/// Orders names as people count: `t-2` before `t-10`.
pub fn natural(a: &str, b: &str) -> Ordering {
    /// The runs of digits and of other characters, without allocating.
    fn chunks(text: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = text;
        std::iter::from_fn(move || {
            let digit = rest.bytes().next()?.is_ascii_digit();
            let end = (rest.bytes())
                .position(|byte| byte.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, chunk))
        })
    }
    for (x, y) in chunks(a).zip(chunks(b)) {
        let order = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A JSON value in the tree's words: `[1, 12]`, `true`, `Fizz`.
fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// A boolean field of the status, coloured.
fn flag(spans: &mut Vec<(String, Tone)>, label: &str, value: &Value) {
    spans.push((format!("  {label}: "), Tone::Plain));
    match value.as_bool() {
        Some(true) => spans.push(("true".to_string(), Tone::True)),
        Some(false) => spans.push(("false".to_string(), Tone::False)),
        None => spans.push(("-".to_string(), Tone::Pending)),
    }
}

/// A list in the status that is shown only when it is not empty.
fn warning_list(spans: &mut Vec<(String, Tone)>, label: &str, value: &Value) {
    if value.as_array().is_some_and(|items| !items.is_empty()) {
        spans.push((format!("  {label}: {}", show(value)), Tone::Warning));
    }
}

/// The spans that describe `object` itself.
fn describe(object: &Object, language: Language) -> Vec<(String, Tone)> {
    let mut spans = vec![
        (format!("{} ", object.kind.name()), Tone::Dim),
        (object.name.clone(), Tone::Name),
    ];
    let spec = match object.kind {
        Kind::Fermat => format!("  n={}", show(&object.spec["number"])),
        Kind::Tuple => format!("  {}", show(&object.spec["numbers"])),
        Kind::Number => format!("  {}", show(&object.spec["value"])),
    };
    spans.push((spec, Tone::Plain));
    if !object.current() {
        let text = match (object.status["observedGeneration"].as_i64(), object.generation) {
            (Some(observed), Some(generation)) => match language {
                Language::English => format!("  (status is for generation {observed}, the spec is at {generation})"),
                Language::Japanese => {
                    format!("  （status は generation {observed} のもの。spec は {generation}）")
                }
            },
            _ => match language {
                Language::English => "  (no status yet)".to_string(),
                Language::Japanese => "  （status はまだありません）".to_string(),
            },
        };
        spans.push((text, Tone::Pending));
        return spans;
    }
    let status = &object.status;
    match object.kind {
        Kind::Fermat => {
            flag(&mut spans, "twoSquaresFound", &status["twoSquaresFound"]);
            warning_list(&mut spans, "nameClashes", &status["nameClashes"]);
            warning_list(&mut spans, "blockedTuples", &status["blockedTuples"]);
            if let Some(problem) = status["problem"].as_str() {
                spans.push((format!("  problem: {problem}"), Tone::Warning));
            }
        }
        Kind::Tuple => {
            flag(&mut spans, "allSquares", &status["allSquares"]);
            warning_list(&mut spans, "nameClashes", &status["nameClashes"]);
        }
        Kind::Number => {
            spans.push((format!("  fizzBuzz: {}", show(&status["fizzBuzz"])), Tone::Plain));
            flag(&mut spans, "isSquare", &status["isSquare"]);
        }
    }
    spans
}

/// The rows of the tree: every object under its controller (roots are the
/// objects without one, or whose controller is not in the namespace), parents
/// first, names in counting order. `marks` highlights objects that changed a
/// moment ago; below a `collapsed` object, nothing is shown.
pub fn rows(
    language: Language,
    objects: &[&Object],
    marks: &HashMap<String, Mark>,
    collapsed: &HashSet<String>,
) -> Vec<Row> {
    rows_in(
        language,
        objects,
        &|uid| marks.get(uid).copied(),
        collapsed,
        0..usize::MAX,
    )
}

/// The same rows, with text only for those whose index is in `window` (the
/// ones on screen): the others keep their place, depth and counts but have no
/// spans, so that thousands of objects cost little to lay out.
pub fn rows_in(
    language: Language,
    objects: &[&Object],
    marks: &dyn Fn(&str) -> Option<Mark>,
    collapsed: &HashSet<String>,
    window: Range<usize>,
) -> Vec<Row> {
    let uids: HashSet<&str> = objects.iter().map(|object| object.uid.as_str()).collect();
    let mut children: HashMap<Option<&str>, Vec<&Object>> = HashMap::new();
    for &object in objects {
        let parent = object.controller.as_deref().filter(|uid| uids.contains(uid));
        children.entry(parent).or_default().push(object);
    }
    for siblings in children.values_mut() {
        siblings.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| natural(&a.name, &b.name)));
    }
    let mut walk = Walk {
        language,
        children: &children,
        marks,
        collapsed,
        window,
        rows: Vec::new(),
    };
    for root in children.get(&None).cloned().unwrap_or_default() {
        walk.visit(root, 0, String::new(), true);
    }
    walk.rows
}

/// A walk down the tree that collects its rows.
struct Walk<'a> {
    language: Language,
    children: &'a HashMap<Option<&'a str>, Vec<&'a Object>>,
    marks: &'a dyn Fn(&str) -> Option<Mark>,
    collapsed: &'a HashSet<String>,
    window: Range<usize>,
    rows: Vec<Row>,
}

impl Walk<'_> {
    fn count_below(&self, uid: &str) -> usize {
        (self.children.get(&Some(uid))).map_or(0, |kids| kids.iter().map(|kid| 1 + self.count_below(&kid.uid)).sum())
    }

    fn visit(&mut self, object: &Object, depth: usize, guide: String, last: bool) {
        let below = self.count_below(&object.uid);
        let collapsed = below > 0 && self.collapsed.contains(&object.uid);
        let mut spans = Vec::new();
        if self.window.contains(&self.rows.len()) {
            if depth > 0 {
                spans.push((format!("{guide}{}", if last { "└─ " } else { "├─ " }), Tone::Dim));
            }
            if collapsed {
                spans.push(("▸ ".to_string(), Tone::Dim));
            }
            spans.extend(self.described(object));
            if collapsed {
                let text = match self.language {
                    Language::English => format!("  … {below} below"),
                    Language::Japanese => format!("  … 下に {below} 個"),
                };
                spans.push((text, Tone::Dim));
            }
        }
        self.rows.push(Row {
            uid: object.uid.clone(),
            depth,
            below,
            collapsed,
            spans,
        });
        if collapsed {
            return;
        }
        let kids = (self.children.get(&Some(object.uid.as_str())))
            .cloned()
            .unwrap_or_default();
        let guide = if depth == 0 {
            String::new()
        } else {
            format!("{guide}{}", if last { "   " } else { "│  " })
        };
        for (index, kid) in kids.iter().enumerate() {
            self.visit(kid, depth + 1, guide.clone(), index + 1 == kids.len());
        }
    }

    /// The object's own spans, with its highlight if it has one.
    fn described(&self, object: &Object) -> Vec<(String, Tone)> {
        let mut described = describe(object, self.language);
        let Some(mark) = (self.marks)(&object.uid) else {
            return described;
        };
        let (sign, tone) = match mark {
            Mark::Created => ("+ ", Tone::Created),
            Mark::Changed => ("~ ", Tone::Changed),
            Mark::Deleted => ("✗ ", Tone::Deleted),
        };
        if mark == Mark::Deleted {
            // Gone: drawn in one tone, with no status colours.
            let text: String = described.iter().map(|(text, _)| text.as_str()).collect();
            let deleted = match self.language {
                Language::English => "(deleted)",
                Language::Japanese => "（削除）",
            };
            described = vec![(format!("{text}  {deleted}"), Tone::Deleted)];
        } else if let Some(name) = described.get_mut(1) {
            name.1 = tone;
        }
        described.insert(0, (sign.to_string(), tone));
        described
    }
}

/// The first line: the namespace, how many of each kind, how many still
/// without a status for their current spec. `installed` lists the kinds the
/// cluster serves.
pub fn header(language: Language, namespace: &str, objects: &[&Object], installed: &[Kind]) -> String {
    let mut parts = Vec::new();
    for kind in Kind::ALL {
        if !installed.contains(&kind) {
            parts.push(match language {
                Language::English => format!("{} not installed", kind.plural()),
                Language::Japanese => format!("{} の CRD なし", kind.name()),
            });
            continue;
        }
        let count = objects.iter().filter(|object| object.kind == kind).count();
        parts.push(match language {
            Language::English if count == 1 => format!("{count} {}", kind.name()),
            Language::English => format!("{count} {}s", kind.name()),
            Language::Japanese => format!("{} {count} 個", kind.name()),
        });
    }
    let pending = objects.iter().filter(|object| !object.current()).count();
    match language {
        Language::English => format!(
            "namespace {namespace}: {}; {pending} without a status for their spec",
            parts.join(", ")
        ),
        Language::Japanese => format!(
            "ネームスペース {namespace}: {}。status が spec に追いついていないもの {pending} 個",
            parts.join("、")
        ),
    }
}

/// The whole tree as plain text, one object per line, for `--once`.
pub fn plain(language: Language, namespace: &str, objects: &[&Object], installed: &[Kind]) -> String {
    let mut out = header(language, namespace, objects, installed);
    out.push('\n');
    for row in rows(language, objects, &HashMap::new(), &HashSet::new()) {
        out.push_str(&row.text());
        out.push('\n');
    }
    out
}

/// Why the tree has not settled yet, or `None` once it has: every object has
/// a status for its current spec, no object waits for the garbage collector
/// (its owner is gone), every parent has exactly the children its
/// spec asks for (apart from names that another owner holds, which it
/// reports), and every parent's answer agrees with what its children say.
pub fn unsettled(language: Language, objects: &[&Object]) -> Option<String> {
    let japanese = language == Language::Japanese;
    if let Some(object) = objects.iter().find(|object| !object.current()) {
        let (kind, name) = (object.kind.name(), &object.name);
        return Some(if japanese {
            format!("{kind} {name} の status がまだ今の spec に追いついていません")
        } else {
            format!("{kind} {name} has no status for its current spec yet")
        });
    }
    let uids: HashSet<&str> = objects.iter().map(|object| object.uid.as_str()).collect();
    let orphan = |object: &&&Object| object.controller.as_deref().is_some_and(|uid| !uids.contains(uid));
    if let Some(object) = objects.iter().find(orphan) {
        let (kind, name) = (object.kind.name(), &object.name);
        return Some(if japanese {
            format!("{kind} {name} はガベージコレクターを待っています。所有者はもうありません")
        } else {
            format!("{kind} {name} waits for the garbage collector: its owner is gone")
        });
    }
    // From the bottom up: the lowest disagreement is the one to report.
    let parents = [Kind::Tuple, Kind::Fermat]
        .into_iter()
        .flat_map(|kind| objects.iter().copied().filter(move |object| object.kind == kind));
    for parent in parents {
        if let Some(why) = parent_unsettled(language, objects, parent) {
            return Some(why);
        }
    }
    None
}

/// The strings in a JSON list, or none when it is not a list.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The name and spec of each child a parent's spec asks for.
type Wanted = Vec<(String, Value)>;

/// The children `parent`'s spec asks for: their kind, the name and spec of
/// each, and the status field where the parent gives its answer. `None` for
/// an object that has no children to wait for.
fn wanted_children(parent: &Object) -> Option<(Kind, Wanted, &'static str)> {
    match parent.kind {
        Kind::Number => None,
        // A Fermat the controller refused to expand has no children.
        Kind::Fermat if parent.status["problem"].is_string() => None,
        Kind::Tuple => {
            let numbers = parent.spec["numbers"].as_array().cloned().unwrap_or_default();
            let wanted = numbers
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    (
                        catalogue::number_name(&parent.name, index),
                        serde_json::json!({ "value": value }),
                    )
                })
                .collect();
            Some((Kind::Number, wanted, "allSquares"))
        }
        Kind::Fermat => {
            let n = parent.spec["number"].as_i64().unwrap_or(0);
            let wanted = (1..=n / 2)
                .map(|i| {
                    let name = catalogue::tuple_name(&parent.name, i as u64, n as u64);
                    (name, serde_json::json!({ "numbers": [i, n - i] }))
                })
                .collect();
            Some((Kind::Tuple, wanted, "twoSquaresFound"))
        }
    }
}

/// Why `parent` has not settled yet, or `None` once it has: it has exactly
/// the children its spec asks for (apart from names that another owner
/// holds), and its answer agrees with what they say.
fn parent_unsettled(language: Language, objects: &[&Object], parent: &Object) -> Option<String> {
    let japanese = language == Language::Japanese;
    let (child_kind, wanted, answer) = wanted_children(parent)?;
    let clashes = strings(&parent.status["nameClashes"]);
    let ours: Vec<&Object> = (objects.iter().copied())
        .filter(|object| object.kind == child_kind && object.controller.as_deref() == Some(parent.uid.as_str()))
        .collect();
    let mut found = Vec::new();
    for (name, spec) in &wanted {
        if clashes.contains(name) {
            continue;
        }
        match ours.iter().find(|child| child.name == *name && child.spec == *spec) {
            Some(child) => found.push(*child),
            None => {
                let (kind, parent, child) = (parent.kind.name(), &parent.name, child_kind.name());
                return Some(if japanese {
                    format!("{kind} {parent} には子リソースの {child} {name} がまだありません")
                } else {
                    format!("{kind} {parent} does not have its {child} {name} yet")
                });
            }
        }
    }
    if let Some(extra) = ours
        .iter()
        .find(|child| !wanted.iter().any(|(name, _)| *name == child.name))
    {
        let (kind, parent, child, extra) = (parent.kind.name(), &parent.name, child_kind.name(), &extra.name);
        return Some(if japanese {
            format!("{kind} {parent} には、もう不要な {child} {extra} が残っています")
        } else {
            format!("{kind} {parent} still has {child} {extra}, which it no longer wants")
        });
    }
    let expected = match parent.kind {
        Kind::Tuple => clashes.is_empty() && found.iter().all(|child| child.status["isSquare"] == true),
        _ => found.iter().any(|child| child.status["allSquares"] == true),
    };
    if parent.status[answer].as_bool() != Some(expected) {
        let (kind, name, said) = (parent.kind.name(), &parent.name, show(&parent.status[answer]));
        return Some(if japanese {
            format!("{kind} {name} は {answer}: {said} ですが、子リソースによれば {expected} です")
        } else {
            format!("{kind} {name} says {answer}: {said}, while its children say {expected}")
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(objects: &[Object]) -> Vec<&Object> {
        objects.iter().collect()
    }

    fn object(kind: Kind, name: &str, controller: Option<&str>, spec: Value, status: Value) -> Object {
        Object {
            kind,
            name: name.to_string(),
            uid: format!("uid-{name}"),
            controller: controller.map(|name| format!("uid-{name}")),
            generation: Some(1),
            spec,
            status,
        }
    }

    fn number(name: &str, parent: &str, value: i64, fizz_buzz: &str, is_square: bool) -> Object {
        let status = json!({"fizzBuzz": fizz_buzz, "isSquare": is_square, "observedGeneration": 1});
        object(Kind::Number, name, Some(parent), json!({"value": value}), status)
    }

    fn tuple(name: &str, parent: Option<&str>, numbers: [i64; 2], all_squares: bool) -> Object {
        let status = json!({"allSquares": all_squares, "nameClashes": [], "observedGeneration": 1});
        object(Kind::Tuple, name, parent, json!({"numbers": numbers}), status)
    }

    /// A settled Fermat of 5: 1 + 4 and 2 + 3.
    fn five() -> Vec<Object> {
        let fermat_status = json!({"twoSquaresFound": true, "nameClashes": [], "observedGeneration": 1});
        vec![
            number("five-2-and-3-1", "five-2-and-3", 3, "Fizz", false),
            object(Kind::Fermat, "five", None, json!({"number": 5}), fermat_status),
            tuple("five-2-and-3", Some("five"), [2, 3], false),
            number("five-1-and-4-0", "five-1-and-4", 1, "1", true),
            tuple("five-1-and-4", Some("five"), [1, 4], true),
            number("five-1-and-4-1", "five-1-and-4", 4, "4", true),
            number("five-2-and-3-0", "five-2-and-3", 2, "2", false),
        ]
    }

    #[test]
    fn the_tree_follows_the_controller_references_in_counting_order() {
        let text = plain(Language::English, "default", &refs(&five()), &Kind::ALL);
        let expected = "\
namespace default: 1 Fermat, 2 Tuples, 4 Numbers; 0 without a status for their spec
Fermat five  n=5  twoSquaresFound: true
├─ Tuple five-1-and-4  [1, 4]  allSquares: true
│  ├─ Number five-1-and-4-0  1  fizzBuzz: 1  isSquare: true
│  └─ Number five-1-and-4-1  4  fizzBuzz: 4  isSquare: true
└─ Tuple five-2-and-3  [2, 3]  allSquares: false
   ├─ Number five-2-and-3-0  2  fizzBuzz: 2  isSquare: false
   └─ Number five-2-and-3-1  3  fizzBuzz: Fizz  isSquare: false
";
        assert_eq!(text, expected);
    }

    #[test]
    fn names_sort_as_people_count() {
        let mut names = vec!["t-10", "t-2", "t-1", "s-3", "t-02x"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["s-3", "t-1", "t-2", "t-02x", "t-10"]);
    }

    #[test]
    fn true_and_false_are_coloured_and_a_missing_status_is_pending() {
        let mut objects = five();
        objects[6].status = Value::Null;
        let rows = rows(Language::English, &refs(&objects), &HashMap::new(), &HashSet::new());
        let tones = |row: &Row| row.spans.iter().map(|(_, tone)| *tone).collect::<Vec<_>>();
        assert!(tones(&rows[1]).contains(&Tone::True));
        assert!(tones(&rows[4]).contains(&Tone::False));
        assert_eq!(rows[5].text(), "   ├─ Number five-2-and-3-0  2  (no status yet)");
        assert_eq!(tones(&rows[5]).last(), Some(&Tone::Pending));
    }

    #[test]
    fn a_status_for_an_older_spec_says_so() {
        let mut objects = five();
        objects[3].generation = Some(2);
        let text = plain(Language::English, "default", &refs(&objects), &Kind::ALL);
        assert!(text.contains("Number five-1-and-4-0  1  (status is for generation 1, the spec is at 2)"));
        assert!(text.starts_with("namespace default: 1 Fermat, 2 Tuples, 4 Numbers; 1 without a status"));
    }

    #[test]
    fn marks_highlight_created_changed_and_deleted_objects() {
        let objects = five();
        let marks = HashMap::from([
            ("uid-five-1-and-4-0".to_string(), Mark::Deleted),
            ("uid-five-1-and-4-1".to_string(), Mark::Created),
            ("uid-five-2-and-3".to_string(), Mark::Changed),
        ]);
        let rows = rows(Language::English, &refs(&objects), &marks, &HashSet::new());
        assert_eq!(
            rows[2].spans.last(),
            Some(&(
                "Number five-1-and-4-0  1  fizzBuzz: 1  isSquare: true  (deleted)".to_string(),
                Tone::Deleted
            ))
        );
        assert!(rows[2].text().starts_with("│  ├─ ✗ Number"));
        assert!(rows[3].spans.contains(&("five-1-and-4-1".to_string(), Tone::Created)));
        assert!(rows[4].spans.contains(&("five-2-and-3".to_string(), Tone::Changed)));
        assert!(rows[4].text().contains("~ Tuple five-2-and-3"));
    }

    #[test]
    fn only_the_rows_in_the_window_get_text() {
        let all = rows(Language::English, &refs(&five()), &HashMap::new(), &HashSet::new());
        let window = rows_in(Language::English, &refs(&five()), &|_| None, &HashSet::new(), 2..4);
        assert_eq!(window.len(), all.len());
        for (index, (row, full)) in window.iter().zip(&all).enumerate() {
            assert_eq!((&row.uid, row.depth, row.below), (&full.uid, full.depth, full.below));
            let expected = if (2..4).contains(&index) {
                full.spans.clone()
            } else {
                Vec::new()
            };
            assert_eq!(row.spans, expected, "row {index}");
        }
    }

    #[test]
    fn a_collapsed_parent_hides_what_is_below_and_counts_it() {
        let collapsed = HashSet::from(["uid-five".to_string()]);
        let rows = rows(Language::English, &refs(&five()), &HashMap::new(), &collapsed);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].below, 6);
        assert_eq!(rows[0].text(), "▸ Fermat five  n=5  twoSquaresFound: true  … 6 below");
    }

    #[test]
    fn objects_without_a_controller_here_are_roots() {
        let mut objects = five();
        // Its Tuple is gone: the garbage collector has not removed it yet.
        objects.retain(|object| object.name != "five-2-and-3");
        objects.push(number("alone", "nobody", 9, "Fizz", true));
        let rows = rows(Language::English, &refs(&objects), &HashMap::new(), &HashSet::new());
        let roots: Vec<String> = rows.iter().filter(|row| row.depth == 0).map(Row::text).collect();
        assert_eq!(
            roots,
            [
                "Fermat five  n=5  twoSquaresFound: true",
                "Number alone  9  fizzBuzz: Fizz  isSquare: true",
                "Number five-2-and-3-0  2  fizzBuzz: 2  isSquare: false",
                "Number five-2-and-3-1  3  fizzBuzz: Fizz  isSquare: false",
            ]
        );
    }

    #[test]
    fn name_clashes_and_problems_are_shown() {
        let mut objects = five();
        objects[2].status["nameClashes"] = json!(["five-2-and-3-0"]);
        objects[1].status["problem"] = json!("n = 1000 is above 100");
        let text = plain(Language::English, "default", &refs(&objects), &Kind::ALL);
        assert!(
            text.contains("allSquares: false  nameClashes: [five-2-and-3-0]"),
            "{text}"
        );
        assert!(
            text.contains("twoSquaresFound: true  problem: n = 1000 is above 100"),
            "{text}"
        );
    }

    #[test]
    fn kinds_the_cluster_does_not_serve_are_named() {
        assert_eq!(
            header(Language::Japanese, "ns", &[], &[Kind::Number]),
            "ネームスペース ns: Fermat の CRD なし、Tuple の CRD なし、Number 0 個。status が spec に追いついていないもの 0 個"
        );
        let header = header(Language::English, "ns", &[], &[Kind::Number]);
        assert_eq!(
            header,
            "namespace ns: fermats not installed, tuples not installed, 0 Numbers; 0 without a status for their spec"
        );
    }

    #[test]
    fn a_settled_tree_is_settled() {
        assert_eq!(unsettled(Language::English, &refs(&five())), None);
    }

    #[test]
    fn a_tree_is_not_settled_while_anything_lags() {
        let mut objects = five();
        objects[0].status = Value::Null;
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Number five-2-and-3-1 has no status for its current spec yet")
        );

        let mut objects = five();
        objects.remove(0);
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Tuple five-2-and-3 does not have its Number five-2-and-3-1 yet")
        );

        let mut objects = five();
        objects[4].status["allSquares"] = json!(false);
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Tuple five-1-and-4 says allSquares: false, while its children say true")
        );

        let mut objects = five();
        objects[1].status["twoSquaresFound"] = json!(false);
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Fermat five says twoSquaresFound: false, while its children say true")
        );

        let mut objects = five();
        objects.retain(|object| object.kind != Kind::Fermat);
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Tuple five-2-and-3 waits for the garbage collector: its owner is gone")
        );

        let mut objects = five();
        let mut extra = tuple("five-3-and-2", Some("five"), [3, 2], true);
        extra.spec = json!({"numbers": []});
        objects.push(extra);
        assert_eq!(
            unsettled(Language::English, &refs(&objects)).as_deref(),
            Some("Fermat five still has Tuple five-3-and-2, which it no longer wants")
        );
    }

    #[test]
    fn a_clash_the_parent_reports_does_not_hold_the_tree_back() {
        let mut objects = five();
        objects.retain(|object| object.name != "five-2-and-3-0");
        objects.push(object(
            Kind::Number,
            "five-2-and-3-0",
            None,
            json!({"value": 7}),
            json!({"fizzBuzz": "7", "isSquare": false, "observedGeneration": 1}),
        ));
        let tuple = objects.iter_mut().find(|object| object.name == "five-2-and-3").unwrap();
        tuple.status["nameClashes"] = json!(["five-2-and-3-0"]);
        assert_eq!(unsettled(Language::English, &refs(&objects)), None);
    }
}
