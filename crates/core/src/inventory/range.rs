//! Ansible host patterns: `node[1:3]`, `web[01:10]`, `db-[a:c]`, `n[0:10:2]`.

/// Expands an Ansible host pattern into host names.
///
/// ```
/// use clusterkit_core::inventory::expand_host_pattern;
/// assert_eq!(expand_host_pattern("node[1:3]").unwrap(), ["node1", "node2", "node3"]);
/// assert_eq!(expand_host_pattern("web[08:10]").unwrap(), ["web08", "web09", "web10"]);
/// assert_eq!(expand_host_pattern("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
/// ```
pub fn expand_host_pattern(pattern: &str) -> Result<Vec<String>, crate::Invalid> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err((format!("`{pattern}` has a `]` without a `[`")).into());
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range in `{pattern}` is not closed: add `]`"))?;
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = inner.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [a, b] => (*a, *b, "1"),
        [a, b, s] => (*a, *b, *s),
        _ => {
            return Err((format!(
                "host range `[{inner}]` must be `[start:end]` or `[start:end:step]`"
            ))
            .into())
        }
    };
    let step: usize = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
        format!("step `{step}` of host range `[{inner}]` must be a positive number")
    })?;
    let middles: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(
                (format!("host range `[{inner}]` is empty: {start} is after {end}")).into(),
            );
        }
        if (b - a) / step as u64 > 100_000 {
            return Err((format!("host range `[{inner}]` has more than 100000 hosts")).into());
        }
        // Ansible pads to the width of the start when it has leading zeros.
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        (a..=b)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let (a, b) = match (single_letter(start), single_letter(end)) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err((format!(
                    "host range `[{inner}]` must go from number to number or from letter to letter"
                ))
                .into())
            }
        };
        if a > b {
            return Err((format!("host range `[{inner}]` is empty: {a} is after {b}")).into());
        }
        (a..=b).step_by(step).map(String::from).collect()
    };
    let tails = expand_host_pattern(tail)?;
    Ok(middles
        .iter()
        .flat_map(|m| tails.iter().map(move |t| format!("{head}{m}{t}")))
        .collect())
}

fn single_letter(s: &str) -> Option<char> {
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
        _ => None,
    }
}
