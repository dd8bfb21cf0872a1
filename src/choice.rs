//! A reader's choice of projects: which project sections of an issue they get. Readers who
//! chose some projects get the lead, the sections that name no project and their projects'
//! sections; the other projects appear as one line of links to the web archive. An issue is
//! compiled once per distinct choice in a send, never per reader.

use std::collections::BTreeSet;
use std::fmt;

use crate::layout::Registry;
use crate::recipients::Recipient;

/// The column of a recipient list, and the form field, that hold a choice: project ids
/// separated by `;` (`kata-containers;zuul`). Empty or absent: everything.
pub const COLUMN: &str = "projects";

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Choice {
    /// Every project's news: no column, an empty one, or `everything`.
    #[default]
    Everything,
    /// These projects (ids of the layout's `projects.yaml`), at least one.
    Only(BTreeSet<String>),
}

impl Choice {
    /// Reads `kata-containers;zuul` (also `,` or spaces between ids; any case). Ids the
    /// registry does not know are returned apart; a value naming none it knows is everything,
    /// so that a typo in a list never costs a reader their news.
    pub fn parse(value: &str, registry: &Registry) -> (Choice, Vec<String>) {
        let mut known = BTreeSet::new();
        let mut unknown = Vec::new();
        for id in value.split([';', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
            let id = id.to_ascii_lowercase();
            if id == "everything" {
                return (Choice::Everything, unknown);
            }
            match registry.projects.iter().find(|p| p.id == id) {
                Some(p) => {
                    known.insert(p.id.clone());
                }
                None => unknown.push(id),
            }
        }
        (Choice::from_ids(known, registry), unknown)
    }

    /// Every project chosen is everything: a reader who ticks every box also gets the
    /// projects added later.
    pub fn from_ids(ids: BTreeSet<String>, registry: &Registry) -> Choice {
        if ids.is_empty() || registry.projects.iter().all(|p| ids.contains(&p.id)) {
            Choice::Everything
        } else {
            Choice::Only(ids)
        }
    }

    /// Whether a section of `project` (None: not a project's) is in this choice.
    pub fn includes(&self, project: Option<&str>) -> bool {
        match (self, project) {
            (Choice::Everything, _) | (_, None) => true,
            (Choice::Only(ids), Some(id)) => ids.contains(id),
        }
    }

    pub fn ids(&self) -> Vec<&str> {
        match self {
            Choice::Everything => Vec::new(),
            Choice::Only(ids) => ids.iter().map(String::as_str).collect(),
        }
    }
}

/// `kata-containers;zuul`, or empty for everything: the form the list column takes.
impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ids().join(";"))
    }
}

/// Readers taken in windows of this many, each window ordered by their choice.
const WINDOW: usize = 4096;

/// `readers` in windows of [`WINDOW`], each window in the order of their `projects` values
/// (stable: the list's order within one choice). A message is spliced from its edition's
/// encoded parts, about 200 KB; readers whose choices alternate make every message read
/// another edition's, beyond the caches (composing over 32 choices ran at 78% of one
/// edition's speed, grouped at 99%). The readers of a run are the same; only their order
/// within a window changes, and at most a window of them (not their messages) is held.
pub fn grouped<T>(readers: impl Iterator<Item = (Recipient, T)>) -> impl Iterator<Item = (Recipient, T)> {
    let mut readers = readers.fuse();
    let mut window = Vec::new().into_iter();
    std::iter::from_fn(move || {
        if let Some(next) = window.next() {
            return Some(next);
        }
        let mut taken: Vec<(Recipient, T)> = readers.by_ref().take(WINDOW).collect();
        taken.sort_by(|(a, _), (b, _)| a.fields.get(COLUMN).cmp(&b.fields.get(COLUMN)));
        window = taken.into_iter();
        window.next()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        serde_norway::from_str(
            "accent: '#000'\nprojects:\n  - {id: openstack, name: OpenStack, color: '#111'}\n  - {id: kata-containers, name: Kata Containers, color: '#222'}\n  - {id: zuul, name: Zuul, color: '#333'}\n",
        )
        .expect("registry")
    }

    #[test]
    fn a_column_value_is_read_as_the_reader_wrote_it() {
        let r = registry();
        let only = |ids: &[&str]| Choice::Only(ids.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(Choice::parse("", &r).0, Choice::Everything);
        assert_eq!(
            Choice::parse("kata-containers;zuul", &r).0,
            only(&["kata-containers", "zuul"])
        );
        assert_eq!(
            Choice::parse(" Zuul , kata-containers ", &r).0,
            only(&["kata-containers", "zuul"])
        );
        assert_eq!(
            Choice::parse("openstack;kata-containers;zuul", &r).0,
            Choice::Everything
        );
        assert_eq!(Choice::parse("everything", &r).0, Choice::Everything);
        let (choice, unknown) = Choice::parse("zuul;katta", &r);
        assert_eq!((choice, unknown), (only(&["zuul"]), vec!["katta".to_owned()]));
        // A value naming nothing known never takes a reader's news away.
        assert_eq!(Choice::parse("katta", &r).0, Choice::Everything);
        assert_eq!(only(&["zuul", "kata-containers"]).to_string(), "kata-containers;zuul");
        assert!(only(&["zuul"]).includes(None) && !only(&["zuul"]).includes(Some("openstack")));
    }

    #[test]
    fn readers_are_grouped_by_choice_within_a_window_and_none_is_lost() {
        let reader = |i: usize| {
            let mut r = Recipient::sample();
            r.email = format!("r{i}@example.org");
            r.fields
                .insert(COLUMN.into(), ["", "zuul", "kata-containers"][i % 3].into());
            (r, i)
        };
        let order: Vec<usize> = grouped((0..(WINDOW + 1000)).map(reader)).map(|(_, i)| i).collect();
        assert_eq!(order.len(), WINDOW + 1000);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..(WINDOW + 1000)).collect::<Vec<_>>(), "every reader once");
        // The first window: the everything readers (0, 3, 6, ...) in list order, then the rest.
        assert_eq!(&order[..3], &[0, 3, 6]);
        assert!(order[..WINDOW].iter().all(|i| *i < WINDOW), "windows do not mix");
    }
}
