//! clusterkit-volumes: the front of clusterkit's volume driver on a node.
//!
//! Docker finds the `clusterkit` driver on `/run/docker/plugins/clusterkit.sock`,
//! where this program listens; rclone (`rclone serve docker`), which does the
//! work, listens on a socket of its own. Every request is passed on as it
//! came, except `/VolumeDriver.Create` without a remote: rclone refuses a
//! volume that names neither a remote nor a backend type ("volume must have
//! either remote or backend type"), and users of every other driver write
//! `docker volume create -d clusterkit NAME`, or `driver: clusterkit` alone in
//! a compose file. Such a volume gets `remote=clusterkit:volumes/NAME`, its
//! own prefix in the cluster's bucket, the remote clusterkit's own stacks
//! name explicitly.
//!
//! ```
//! let body = br#"{"Name":"data","Opts":null}"#;
//! let out = clusterkit_volumes::with_default_remote(body, "clusterkit:volumes/").unwrap();
//! let v: serde_json::Value = serde_json::from_slice(&out.unwrap()).unwrap();
//! assert_eq!(v["Opts"]["remote"], "clusterkit:volumes/data");
//! ```

use serde_json::{Map, Value};

/// The options that already say where a volume lives (rclone's own names).
pub const WHERE_OPTIONS: [&str; 3] = ["remote", "fs", "type"];

/// Whether `name` is a volume name Docker accepts (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`):
/// the only names allowed into a remote's path.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The body of a `/VolumeDriver.Create` request (`{"Name": …, "Opts": …}`)
/// with `remote` = `prefix` + the volume's name added when no option says
/// where the volume lives; `None` when it needs nothing. A body that is not
/// such a request, a name Docker would not accept or an option that is not
/// a string is refused with the reason, as Docker shows it to the user.
pub fn with_default_remote(body: &[u8], prefix: &str) -> Result<Option<Vec<u8>>, String> {
    let mut request: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        format!("clusterkit volume driver: a create request that is not a JSON object: {e}")
    })?;
    let name = match request.get("Name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        Some(Value::String(n)) => {
            return Err(format!(
                "clusterkit volume driver: `{}` is not a volume name (letters, digits, `_`, `.` and `-`, starting with a letter or digit)",
                n.chars().filter(|c| !c.is_control()).take(80).collect::<String>()
            ))
        }
        _ => return Err("clusterkit volume driver: a create request with no volume name".into()),
    };
    let opts = match request.get("Opts") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err("clusterkit volume driver: the volume's options are not a map".into())
        }
    };
    if let Some((k, _)) = opts.iter().find(|(_, v)| !v.is_string()) {
        return Err(format!(
            "clusterkit volume driver: option `{}` is not a string",
            k.chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect::<String>()
        ));
    }
    let given = |k: &str| {
        opts.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    if WHERE_OPTIONS.iter().any(|k| given(k)) {
        return Ok(None);
    }
    let mut opts = opts;
    opts.retain(|k, _| !WHERE_OPTIONS.contains(&k.as_str()));
    opts.insert("remote".into(), Value::String(format!("{prefix}{name}")));
    request.insert("Opts".into(), Value::Object(opts));
    serde_json::to_vec(&request)
        .map(Some)
        .map_err(|e| format!("clusterkit volume driver: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(out: Option<Vec<u8>>) -> Value {
        serde_json::from_slice::<Value>(&out.expect("rewritten")).unwrap()["Opts"].clone()
    }

    #[test]
    fn a_volume_with_no_options_gets_its_own_prefix() {
        for body in [
            r#"{"Name":"app_data","Opts":null}"#,
            r#"{"Name":"app_data"}"#,
            r#"{"Name":"app_data","Opts":{}}"#,
        ] {
            let o = opts(with_default_remote(body.as_bytes(), "clusterkit:volumes/").unwrap());
            assert_eq!(
                o,
                serde_json::json!({"remote": "clusterkit:volumes/app_data"}),
                "{body}"
            );
        }
    }

    #[test]
    fn other_options_are_kept_and_a_given_remote_wins() {
        let o = opts(
            with_default_remote(
                br#"{"Name":"db","Opts":{"vfs-cache-mode":"full","remote":""}}"#,
                "clusterkit:volumes/",
            )
            .unwrap(),
        );
        assert_eq!(
            o,
            serde_json::json!({"remote": "clusterkit:volumes/db", "vfs-cache-mode": "full"})
        );
        for given in [
            r#"{"Name":"db","Opts":{"remote":"clusterkit:volumes/elsewhere"}}"#,
            r#"{"Name":"db","Opts":{"fs":"clusterkit:volumes/x"}}"#,
            r#"{"Name":"db","Opts":{"type":"s3","s3-provider":"Other"}}"#,
        ] {
            assert_eq!(
                with_default_remote(given.as_bytes(), "clusterkit:volumes/").unwrap(),
                None,
                "{given}"
            );
        }
    }

    #[test]
    fn hostile_requests_are_refused_with_the_reason() {
        for (body, why) in [
            (
                r#"{"Name":"../etc","Opts":null}"#,
                "`../etc` is not a volume name",
            ),
            (r#"{"Name":"a/b"}"#, "`a/b` is not a volume name"),
            (r#"{"Name":"x"}"#, "`x` is not a volume name"),
            (r#"{"Name":".hidden"}"#, "`.hidden` is not a volume name"),
            (r#"{"Opts":null}"#, "no volume name"),
            (r#"{"Name":7}"#, "no volume name"),
            (r#"{"Name":"ok","Opts":[1]}"#, "options are not a map"),
            (
                r#"{"Name":"ok","Opts":{"size":1}}"#,
                "option `size` is not a string",
            ),
            ("not json", "not a JSON object"),
            ("[]", "not a JSON object"),
        ] {
            let e = with_default_remote(body.as_bytes(), "clusterkit:volumes/").unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        assert!(valid_name("a1") && valid_name("app_data.v2-x") && !valid_name(&"a".repeat(256)));
    }
}
