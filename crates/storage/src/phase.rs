//! Storage as a phase of `clusterkit up` ([`clusterkit_core::engine`]).

use std::sync::Arc;

use clusterkit_core::engine::{
    compare_files, BoxError, Change, Context, ImageNeed, Outcome, Phase,
};
use clusterkit_core::spec::{ClusterSpec, StorageBackend};
use clusterkit_core::transport::{images, Transport};

/// The storage stack, its layout, key and buckets, and the volume driver on
/// every node.
#[derive(Debug, Clone, Default)]
pub struct StoragePhase {
    /// The volume driver's front (`clusterkit-volumes`) to install where it
    /// differs; `None`: nodes keep theirs, a node with none is refused
    /// ([`crate::install_driver`]). [`local_front_binary`] finds the one
    /// beside the running executable.
    pub front: Option<Arc<Vec<u8>>>,
}

/// The volume driver's front executable this machine would upload:
/// `CLUSTERKIT_VOLUMES`, else `clusterkit-volumes` beside the running
/// executable; `None` when neither is there (nodes that already run one
/// keep it).
pub fn local_front_binary() -> Option<Vec<u8>> {
    clusterkit_core::transport::local_helper("CLUSTERKIT_VOLUMES", "clusterkit-volumes")
}

#[async_trait::async_trait]
impl Phase for StoragePhase {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn enabled(&self, spec: &ClusterSpec) -> bool {
        spec.storage.backend != StorageBackend::None
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let Some(mgr) = cx.manager() else {
            return Ok(Vec::new());
        };
        let running = crate::roll::running_images(mgr.as_ref(), cx.spec).await?;
        let Some(st) = crate::render::stack_keeping(cx.spec, &running) else {
            return Ok(Vec::new());
        };
        compare_files(
            mgr.as_ref(),
            "storage",
            crate::STACK_DIR,
            &st.all(),
            "redeploy",
        )
        .await
    }

    async fn images(&self, cx: &Context<'_>) -> Result<Vec<ImageNeed>, BoxError> {
        let holders: Vec<Arc<dyn Transport>> = cx
            .nodes
            .iter()
            .filter(|t| cx.spec.node(t.node()).is_some_and(|n| n.storage))
            .cloned()
            .collect();
        Ok(vec![(cx.spec.storage.image.clone(), holders)])
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let spec = cx.spec;
        let say = |m: &str| cx.say(m);
        let mut out = Outcome::default();
        out.nodes
            .extend(images::provide(&self.images(cx).await?, &say).await?);
        let c = crate::up(
            cx.nodes,
            spec,
            self.front.as_deref().map(Vec::as_slice),
            &say,
        )
        .await?;
        out.nodes.extend(c.driver_changed.iter().cloned());
        out.nodes.extend(c.layout_added.iter().cloned());
        out.cluster |= c.any();
        // Health comes from Garage's admin API; MinIO's probe was `up`'s last step.
        let health = if spec.storage.backend == StorageBackend::Garage {
            let h = match c.health {
                Some(h) => h,
                None => crate::health(cx.nodes, spec).await?,
            };
            let down = h.storage_nodes.saturating_sub(h.storage_nodes_up);
            cx.say(&format!(
                "{} on {} node(s), tolerates {} loss(es)",
                h.status,
                h.storage_nodes,
                if h.status == "unavailable" {
                    0
                } else {
                    crate::tolerates(spec.storage.replication, down)
                }
            ));
            h.status
        } else {
            "probed".to_string()
        };
        let mut summary = format!(
            "{:?} storage ({health}) with the `{}` volume driver",
            spec.storage.backend,
            crate::DRIVER
        )
        .to_lowercase();
        if !c.image_behind.is_empty() {
            summary.push_str(&format!(
                "; Garage on {} runs another image than the spec's: `clusterkit upgrade --component storage` rolls it to {}",
                c.image_behind.join(", "),
                spec.storage.image
            ));
        }
        out.summary = Some(summary);
        Ok(out)
    }
}
