//! An address as it goes on the envelope: trimmed, checked, its domain in ASCII.

/// RFC 5321 limits: 64 octets of local part, 254 of address.
const MAX_LOCAL: usize = 64;

const MAX_ADDRESS: usize = 254;

/// Trims an address, checks it, and converts an internationalized domain to ASCII.
pub fn normalize_address(raw: &str) -> std::result::Result<String, &'static str> {
    let addr = raw.trim();
    if addr.is_empty() {
        return Err("empty");
    }
    if addr.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err("no @");
    };
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err("the part before @ must have 1 to 64 characters");
    }
    let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| "the domain is not a valid name")?;
    if ascii_domain.ends_with('.') {
        return Err("the domain ends with a dot");
    }
    if !ascii_domain.contains('.') || ascii_domain.starts_with('.') {
        return Err("the domain needs a dot, like example.org");
    }
    let normalized = format!("{local}@{ascii_domain}");
    normalized
        .parse::<lettre::Address>()
        .map_err(|_| "not a valid email address")?;
    if normalized.len() > MAX_ADDRESS {
        return Err("longer than 254 characters");
    }
    Ok(normalized)
}
