//! A stack's services rolled to new images by Swarm itself: the stack is
//! deployed again with the wanted images and each changed service is
//! updated as its `update_config` says (one task at a time, a global
//! service node by node). [`behind`] names the services to change;
//! [`wait_updated`] follows Swarm's update until every task runs the new
//! image, and stops at an update Swarm paused or rolled back, saying how to
//! go on. Monitoring's and the ingress's upgrades go through here.

use std::time::Duration;

use crate::transport::{Cmd, Transport, TransportError};

/// A stack's service whose running image is not the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// The stack (`clusterkit-monitoring`).
    pub stack: &'static str,
    /// The compose name (`prometheus`, `edge`...).
    pub service: &'static str,
    /// The image its service runs now.
    pub running: String,
    /// The wanted image.
    pub wanted: String,
}

impl Behind {
    /// The Swarm service's name.
    pub fn swarm_name(&self) -> String {
        format!("{}_{}", self.stack, self.service)
    }
}

/// A roll that did not end.
#[derive(Debug, thiserror::Error)]
pub enum RollError {
    /// Swarm paused or rolled back a service's update to a new image.
    #[error("Swarm stopped the update of {service} to {wanted} ({state}: {message}); \
             {}`docker service ps --no-trunc {service}` on a manager shows why the new task did not run: \
             fix the image under {section} (or put back {previous}) and run again",
             if state.starts_with("rollback") { format!("Swarm puts its tasks back on {previous}. ") } else { String::new() })]
    UpdateFailed {
        /// The Swarm service.
        service: String,
        /// The image it was to run.
        wanted: String,
        /// The image it ran before.
        previous: String,
        /// Swarm's update state (`paused`, `rollback_completed`...).
        state: String,
        /// Swarm's message.
        message: String,
        /// Where the image is set (`[monitoring]`).
        section: &'static str,
    },
    /// Services did not take their new image in time.
    #[error("{0}: the update to the new image made no progress for 180 s (`docker service ps --no-trunc SERVICE` \
             on a manager shows where it stands); run again once it is unstuck")]
    NotUpdated(String),
    /// A node's answer.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// An image without the digest `docker stack deploy` appends when a
/// registry answers (`name:tag@sha256:…`).
fn without_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(i, _)| i)
}

/// The services of `stack` whose image differs from the wanted one
/// (`wanted`: compose name and image), from `<swarm name> <image>` lines;
/// services not deployed yet are not behind (a deploy puts them on the
/// wanted image).
pub fn parse_behind(
    stack: &'static str,
    wanted: &[(&'static str, String)],
    text: &str,
) -> Vec<Behind> {
    let running: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let (name, image) = l.trim().split_once(' ')?;
            Some((name.strip_prefix(stack)?.strip_prefix('_')?, image.trim()))
        })
        .collect();
    wanted
        .iter()
        .filter_map(|(service, wanted)| {
            let (_, image) = running.iter().find(|(s, _)| s == service)?;
            (without_digest(image) != without_digest(wanted)).then(|| Behind {
                stack,
                service,
                running: without_digest(image).to_string(),
                wanted: wanted.clone(),
            })
        })
        .collect()
}

/// The services of `stack` running another image than the wanted one, read
/// through a manager.
pub async fn behind(
    mgr: &dyn Transport,
    stack: &'static str,
    wanted: &[(&'static str, String)],
) -> Result<Vec<Behind>, TransportError> {
    let out = mgr
        .exec(&Cmd::new(format!(
            "ids=$(docker service ls -q --filter label=com.docker.stack.namespace={stack}); \
             [ -z \"$ids\" ] || docker service inspect -f '{{{{.Spec.Name}}}} {{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' $ids"
        )))
        .await?;
    Ok(parse_behind(stack, wanted, &out.stdout_str()))
}

/// Where one service's update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateState {
    /// Swarm's `UpdateStatus.State` (empty: never updated).
    pub state: String,
    /// Swarm's `UpdateStatus.Message`.
    pub message: String,
    /// Tasks meant to run, on the wanted image and running.
    pub done: usize,
    /// Tasks meant to run.
    pub tasks: usize,
}

impl UpdateState {
    /// Every task runs the wanted image and Swarm's update is over.
    pub fn finished(&self) -> bool {
        self.tasks > 0 && self.done == self.tasks && matches!(self.state.as_str(), "" | "completed")
    }

    /// Swarm stopped the update: paused it, or rolled it back.
    pub fn failed(&self) -> bool {
        self.state == "paused" || self.state.starts_with("rollback")
    }
}

/// Parses the probe of [`wait_updated`] for one service: a
/// `state <State>|<Message>` line, then `task <image> <current state>` lines.
pub fn parse_update(text: &str, wanted: &str) -> UpdateState {
    let mut st = UpdateState {
        state: String::new(),
        message: String::new(),
        done: 0,
        tasks: 0,
    };
    for l in text.lines() {
        if let Some(s) = l.strip_prefix("state ") {
            let (state, message) = s.split_once('|').unwrap_or((s, ""));
            st.state = state.trim().to_string();
            st.message = message.trim().to_string();
        } else if let Some(t) = l.strip_prefix("task ") {
            let (image, current) = t.split_once(' ').unwrap_or((t, ""));
            st.tasks += 1;
            if without_digest(image) == without_digest(wanted) && current.starts_with("Running") {
                st.done += 1;
            }
        }
    }
    st
}

/// How long one task may take to be replaced (stop, start, health).
const PER_TASK: Duration = Duration::from_secs(90);

/// Waits until Swarm has moved every task of `services` to its wanted
/// image, saying each step; an update Swarm paused or rolled back (a task
/// that did not start on the new image) is an error naming the service,
/// Swarm's reason and the way on (`section`: where the image is set).
pub async fn wait_updated(
    mgr: &dyn Transport,
    services: &[Behind],
    section: &'static str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), RollError> {
    let mut pending: Vec<&Behind> = services.iter().collect();
    let mut said: Vec<(String, usize)> = Vec::new();
    let mut deadline = tokio::time::Instant::now() + PER_TASK * 2;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for b in pending {
            let name = b.swarm_name();
            let text = mgr
                .exec(
                    &Cmd::new("echo \"state $(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{end}}' ")
                        .arg(&name)
                        .push(")\"; docker service ps --filter desired-state=running --format 'task {{.Image}} {{.CurrentState}}' ")
                        .arg(&name),
                )
                .await?
                .stdout_str();
            let st = parse_update(&text, &b.wanted);
            if st.failed() {
                return Err(RollError::UpdateFailed {
                    service: name,
                    wanted: b.wanted.clone(),
                    previous: b.running.clone(),
                    state: st.state,
                    message: st.message,
                    section,
                });
            }
            if st.finished() {
                progress(&format!(
                    "{}: every task ({}) on {}, Swarm's update completed",
                    b.service, st.tasks, b.wanted
                ));
                continue;
            }
            // Tasks meant to run come and go while Swarm swaps them: the
            // count said is the tasks already running the new image.
            let before = said.iter().find(|(s, _)| *s == name).map_or(0, |(_, d)| *d);
            if st.done > before {
                said.retain(|(s, _)| *s != name);
                said.push((name.clone(), st.done));
                progress(&format!(
                    "{}: {} task(s) on {}",
                    b.service, st.done, b.wanted
                ));
                // Progress: the patience is for the next task.
                deadline = tokio::time::Instant::now() + PER_TASK * 2;
            }
            still.push(b);
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RollError::NotUpdated(
                pending
                    .iter()
                    .map(|b| b.swarm_name())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
