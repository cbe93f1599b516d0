//! Monitoring as a phase of `clusterkit up` ([`clusterkit_core::engine`]).

use std::sync::Arc;

use clusterkit_core::engine::{
    compare_files, BoxError, Change, Context, ImageNeed, Outcome, Phase,
};
use clusterkit_core::spec::{ClusterSpec, SwarmRole};
use clusterkit_core::transport::{images, Transport};

/// For each monitoring image, the nodes that run it (global services: every
/// node; the others: the managers).
pub fn image_targets(
    nodes: &[Arc<dyn Transport>],
    spec: &ClusterSpec,
) -> Vec<(String, Vec<Arc<dyn Transport>>)> {
    crate::render::images(spec)
        .into_iter()
        .map(|(image, everywhere)| {
            let on = nodes
                .iter()
                .filter(|t| {
                    everywhere
                        || spec
                            .node(t.node())
                            .is_some_and(|n| n.role == SwarmRole::Manager)
                })
                .cloned()
                .collect();
            (image, on)
        })
        .collect()
}

/// Prometheus, the exporters, Grafana and Alertmanager as the spec says,
/// every service running.
pub struct MonitoringPhase;

#[async_trait::async_trait]
impl Phase for MonitoringPhase {
    fn name(&self) -> &'static str {
        "monitoring"
    }

    fn enabled(&self, spec: &ClusterSpec) -> bool {
        spec.monitoring.enabled
    }

    async fn check(&self, cx: &Context<'_>) -> Result<Vec<Change>, BoxError> {
        let Some(mgr) = cx.manager() else {
            return Ok(Vec::new());
        };
        let st = crate::render::stack(cx.spec);
        let mut out = compare_files(
            mgr.as_ref(),
            "monitoring",
            crate::STACK_DIR,
            &st.all(),
            "redeploy",
        )
        .await?;
        // Grafana's keeper, on every manager.
        for t in clusterkit_core::stack::managers(cx.nodes, cx.spec) {
            out.extend(crate::keeper::check(t.as_ref(), cx.spec).await?);
        }
        Ok(out)
    }

    async fn images(&self, cx: &Context<'_>) -> Result<Vec<ImageNeed>, BoxError> {
        Ok(image_targets(cx.nodes, cx.spec))
    }

    async fn apply(&self, cx: &Context<'_>) -> Result<Outcome, BoxError> {
        let say = |m: &str| cx.say(m);
        let mut out = Outcome::default();
        out.nodes
            .extend(images::provide(&self.images(cx).await?, &say).await?);
        let c = crate::up(cx.nodes, cx.spec, &say).await?;
        out.cluster |= c.any();
        for e in crate::endpoints(cx.nodes, cx.spec).await? {
            cx.say(&format!(
                "{} on {}: http://{}:{}",
                e.service, e.node, e.address, e.port
            ));
        }
        out.summary = Some(format!(
            "monitoring ({}; `clusterkit monitor open` to browse it)",
            crate::render::services(cx.spec).join(", ")
        ));
        Ok(out)
    }
}
