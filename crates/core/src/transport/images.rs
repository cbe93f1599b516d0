//! Images sent to nodes over SSH, for clusters that cannot pull (air-gapped,
//! or the sandbox).

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

/// Loads a `docker save` archive into the node's engine when it lacks any of
/// `images`; returns the images that were missing (empty: nothing sent).
pub async fn push(
    t: &dyn Transport,
    archive: &[u8],
    images: &[String],
) -> Result<Vec<String>, TransportError> {
    let lacking = missing(t, images).await?;
    if !lacking.is_empty() {
        t.exec_with_input(&Cmd::new("docker load -q"), Some(archive))
            .await?;
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

/// `docker save` of `images` from this machine's engine, as one archive.
pub fn save_local(images: &[String]) -> Result<Vec<u8>, crate::Invalid> {
    let out = std::process::Command::new("docker")
        .arg("save")
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
    Ok(out.stdout)
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
    let (send, archive) = (&send, &archive);
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
