//! Secrets from the environment, or from files: every secret variable may instead name the
//! file that holds it, `NAME_FILE` (the container convention; a DKIM key spans lines, which a
//! secrets file of one variable per line cannot hold).

use anyhow::{Result, bail};

/// The secret `name` holds, or the content of the file `NAME_FILE` names, its final line
/// break taken off. Unset or empty: `None`. A file that cannot be read is refused when the
/// configuration loads ([`check_file`]).
pub fn secret(name: &str) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let path = std::env::var_os(format!("{name}_FILE"))?;
    let text = std::fs::read_to_string(path).ok()?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    (!value.is_empty()).then(|| value.to_owned())
}

/// `var` (`NEWSLETTER_DKIM_PRIVATE_KEY_FILE`, naming `path`) for the secret `base`: the file
/// must be readable, and the secret must not be set both ways.
pub(super) fn check_file(var: &str, base: &str, path: &str, env: &[(String, String)]) -> Result<()> {
    if env.iter().any(|(k, v)| k == base && !v.is_empty()) {
        bail!("{base} and {var} are both set: keep one of them (the file, or the value itself)");
    }
    if let Err(e) = std::fs::read_to_string(path) {
        bail!("{var}: cannot read {path}: {e}; it names the file that holds {base}");
    }
    Ok(())
}
