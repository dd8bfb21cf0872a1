//! A reader's choice of projects: which project sections of an issue they get. Readers who
//! chose some projects get the lead, the sections that name no project and their projects'
//! sections; the other projects appear as one line of links to the web archive. An issue is
//! compiled once per distinct choice in a send, never per reader.

use std::collections::BTreeSet;
use std::fmt;

use crate::layout::Registry;

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
}
