//! The layer order of `lib.rs`, kept: every `crate::` path in `src/` (but the binary's
//! `main.rs`, `cli.rs` and `commands/`) names a module listed before its own, and the files
//! of one folder do not import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::LAYERS;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (doc comments name other modules freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first names of every `crate::` path: `crate::ledger::Ledger` and
/// `use crate::{config::Config, html}` give `ledger`, `config`, `html`.
fn crate_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item = true,
                    c if item && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        names.insert(name);
                        item = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    names
}

#[test]
fn imports_run_down_the_layers_and_no_folder_has_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let rank = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut upward = Vec::new();
    let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in &all {
        let relative = path.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if ["main", "cli", "commands", "lib", "layers"].contains(&top.as_str()) {
            continue;
        }
        let Some(own) = rank(&top) else {
            panic!("src/{top} is not in lib.rs's LAYERS: place it there, above what it uses");
        };
        let code = code(path);
        for name in crate_names(&code) {
            if let Some(theirs) = rank(&name)
                && name != top
                && theirs > own
            {
                upward.push(format!(
                    "{} uses crate::{name}, a layer above {top}",
                    relative.display()
                ));
            }
        }
        // Within a folder: which sibling files this one uses.
        let folder = path.parent().unwrap().to_path_buf();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if folder != src && stem != "mod" {
            let uses = siblings
                .entry(folder.clone())
                .or_default()
                .entry(stem.clone())
                .or_default();
            for entry in std::fs::read_dir(&folder).unwrap() {
                let other = entry.unwrap().path();
                let other = other.file_stem().unwrap().to_string_lossy().into_owned();
                if other != stem
                    && other != "mod"
                    && (code.contains(&format!("super::{other}")) || code.contains(&format!("super::{{{other}")))
                {
                    uses.insert(other);
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports running up the layers:\n{}",
        upward.join("\n")
    );
    for (folder, uses) in &siblings {
        for (file, used) in uses {
            for other in used {
                assert!(
                    !uses.get(other).is_some_and(|back| back.contains(file)),
                    "{}: {file}.rs and {other}.rs import each other",
                    folder.display()
                );
            }
        }
    }
}

#[test]
fn crate_paths_are_read_whole() {
    let names = crate_names("use crate::{config::{Config, Smtp}, html};\nlet x = crate::ledger::now();");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["config", "html", "ledger"]);
}
