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
