//! Images sent to nodes over SSH, for clusters that cannot pull (air-gapped,
//! or the sandbox).

use std::path::Path;

use super::{Cmd, Transport, TransportError};

/// The images of `wanted` the node's engine lacks, asked through its API.
pub async fn missing(t: &dyn Transport, wanted: &[String]) -> Result<Vec<String>, TransportError> {
    let docker = t.docker().await?;
    let mut out = Vec::new();
    for image in wanted {
        if docker.inspect_image(image).await.is_err() {
            out.push(image.clone());
        }
    }
    Ok(out)
}

/// How long one node may take to receive and load an archive.
pub const LOAD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Loads a `docker save` archive (a file on this machine, see
/// [`save_local`]) into the node's engine when it lacks any of `images`;
/// returns the images that were missing (empty: nothing sent).
pub async fn push(
    t: &dyn Transport,
    archive: &Path,
    images: &[String],
) -> Result<Vec<String>, TransportError> {
    let lacking = missing(t, images).await?;
    if !lacking.is_empty() {
        load(t, archive).await?;
        let still = missing(t, images).await?;
        if !still.is_empty() {
            return Err(TransportError::Docker {
                node: t.node().to_string(),
                addr: t.addr(),
                reason: format!("after docker load, still missing: {}", still.join(", ")),
            });
        }
    }
    Ok(lacking)
}

/// The command that loads an archive read on stdin: its output and its exit
/// status on stdout (a command held open has no exit status of its own).
const LOAD: &str = "docker load -q 2>&1; echo \"clusterkit-exit=$?\"";

/// Streams the archive at `path` into the node's `docker load`, 256 KiB at a
/// time: the archive (hundreds of MiB for the monitoring images) is never
/// held in this machine's memory, whatever the number of nodes.
pub async fn load(t: &dyn Transport, path: &Path) -> Result<(), TransportError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let failed = |reason: String| TransportError::Docker {
        node: t.node().to_string(),
        addr: t.addr(),
        reason,
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
    let mut file = tokio::io::BufReader::with_capacity(256 * 1024, file);
    let cmd = Cmd::new(LOAD);
    let run = async {
        let mut node = t.exec_stream(&cmd).await?;
        let sent = tokio::io::copy_buf(&mut file, &mut node).await;
        let closed = node.shutdown().await;
        // What the command said, even when sending failed part way: a full
        // disk or a stopped engine is named there.
        let mut out = Vec::new();
        let read = node.read_to_end(&mut out).await;
        let said = String::from_utf8_lossy(&out).into_owned();
        if let Err(e) = sent.and(closed) {
            return Err(failed(format!(
                "sending the archive: {e}; docker load said: {}",
                said.trim()
            )));
        }
        read.map_err(|e| failed(format!("reading what docker load said: {e}")))?;
        Ok(said)
    };
    let said = tokio::time::timeout(LOAD_PATIENCE, run)
        .await
        .map_err(|_| {
            failed(format!(
                "docker load did not end within {} min",
                LOAD_PATIENCE.as_secs() / 60
            ))
        })??;
    load_outcome(t, &said)
}

/// What `docker load` answered through [`LOAD`]: its exit status, and on a
/// failure what it said.
fn load_outcome(t: &dyn Transport, said: &str) -> Result<(), TransportError> {
    match said.trim_end().rsplit_once("clusterkit-exit=") {
        Some((_, "0")) => Ok(()),
        Some((before, status)) => Err(TransportError::Failed {
            node: t.node().to_string(),
            addr: t.addr(),
            cmd: "docker load -q".into(),
            status: status.trim().parse().unwrap_or(1),
            stderr: before.trim().to_string(),
        }),
        None => Err(TransportError::Docker {
            node: t.node().to_string(),
            addr: t.addr(),
            reason: format!(
                "docker load ended without its exit status (the connection dropped?): {}",
                said.trim()
            ),
        }),
    }
}

/// `docker save` of `images` from this machine's engine, as one archive in a
/// temporary file (mode 0600, removed when the handle is dropped): nodes are
/// sent it from there, a chunk at a time.
pub fn save_local(images: &[String]) -> Result<tempfile::NamedTempFile, crate::Invalid> {
    let file = tempfile::Builder::new()
        .prefix("clusterkit-images-")
        .suffix(".tar")
        .tempfile()
        .map_err(|e| format!("making a temporary file for the images: {e}"))?;
    let out = std::process::Command::new("docker")
        .arg("save")
        .arg("-o")
        .arg(file.path())
        .args(images)
        .output()
        .map_err(|e| format!("running docker save (is the docker CLI installed?): {e}"))?;
    if !out.status.success() {
        return Err((format!(
            "docker save {}: {} (build or load the image on this machine first; `docker images` lists what is here)",
            images.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )).into());
    }
    Ok(file)
}

/// Whether this machine's engine holds `image`.
pub fn here(image: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", "-f", ".", image])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sends each image from this machine's engine to the nodes (of its list)
/// that lack it, when this machine has it; nodes that still lack an image
/// pull it themselves in the phase that needs it. The images go as one
/// archive (layers shared between images travel once), loaded once per node.
/// Returns the nodes that received something.
pub async fn provide(
    needs: &[(String, Vec<std::sync::Arc<dyn Transport>>)],
    say: &(dyn Fn(&str) + Sync),
) -> Result<Vec<String>, TransportError> {
    use super::fan_out;
    let mut send: Vec<(String, Vec<String>)> = Vec::new();
    let mut targets: Vec<std::sync::Arc<dyn Transport>> = Vec::new();
    for (image, on) in needs {
        let wanted = std::slice::from_ref(image);
        let mut lacking = Vec::new();
        for (n, r) in fan_out(on, 16, |t| async move { missing(t, wanted).await }).await {
            if !r?.is_empty() {
                lacking.push(n);
            }
        }
        if lacking.is_empty() || !here(image) {
            continue;
        }
        say(&format!(
            "{image} missing on {}: sending it from this machine",
            lacking.join(", ")
        ));
        for t in on.iter().filter(|t| lacking.iter().any(|n| n == t.node())) {
            if !targets.iter().any(|x| x.node() == t.node()) {
                targets.push(std::sync::Arc::clone(t));
            }
        }
        send.push((image.clone(), lacking));
    }
    if send.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<String> = send.iter().map(|(i, _)| i.clone()).collect();
    let archive = save_local(&all).map_err(|reason| TransportError::Docker {
        node: "this machine".into(),
        addr: "local".into(),
        reason: reason.to_string(),
    })?;
    let (send, archive) = (&send, archive.path());
    let mut got = Vec::new();
    for (n, r) in fan_out(&targets, 4, |t| async move {
        let mine: Vec<String> = send
            .iter()
            .filter(|(_, on)| on.iter().any(|n| n == t.node()))
            .map(|(i, _)| i.clone())
            .collect();
        push(t, archive, &mine).await
    })
    .await
    {
        let loaded = r?;
        if !loaded.is_empty() {
            say(&format!("{n}: loaded {}", loaded.join(", ")));
            got.push(n);
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::script::Scripted;

    #[test]
    fn what_docker_load_answered_is_its_exit_status_and_words() {
        let n = Scripted::new("node2");
        assert!(load_outcome(&n, "Loaded image: a:1\nclusterkit-exit=0\n").is_ok());
        let e = load_outcome(
            &n,
            "write /var/lib/docker/x: no space left on device\nclusterkit-exit=1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("node2"), "{e}");
        assert!(e.contains("no space left on device"), "{e}");
        // Cut off before the command could say how it ended.
        let e = load_outcome(&n, "").unwrap_err().to_string();
        assert!(e.contains("without its exit status"), "{e}");
    }
}
