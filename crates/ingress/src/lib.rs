//! clusterkit-ingress: applications reached by name over HTTPS.
//!
//! A service asks for a route with labels in its `deploy.labels`, the way
//! users of other proxies write them:
//!
//! ```yaml
//! deploy:
//!   labels:
//!     clusterkit.ingress.host: app.example.com
//!     clusterkit.ingress.port: "8000"      # optional, 80 by default
//!     clusterkit.ingress.path: /api        # optional, every path by default
//! ```
//!
//! [`route::routes`] reads every service's labels into [`route::Route`]s,
//! each value checked (a label is written by whoever deploys a stack: it is
//! hostile until validated), and says why it refused the others.
//! [`caddy`] renders what the Caddy servers on the ingress nodes load:
//! TLS ended on every node, each request passed over the `clusterkit`
//! overlay to the service's tasks (`tasks.NAME`, as the routing mesh is not
//! assumed), plain HTTP redirected, HSTS on.
//!
//! ```
//! use std::collections::BTreeMap;
//! use clusterkit_ingress::route::{routes, Service};
//!
//! let labels = BTreeMap::from([
//!     ("clusterkit.ingress.host".to_string(), "App.Example.com".to_string()),
//!     ("clusterkit.ingress.port".to_string(), "8000".to_string()),
//! ]);
//! let found = routes(&[Service { name: "app_web".into(), labels }]);
//! assert!(found.refused.is_empty());
//! assert_eq!(found.routes[0].host, "app.example.com");
//! assert_eq!(found.routes[0].upstream(), "tasks.app_web:8000");
//! ```

pub mod caddy;
#[cfg(feature = "remote")]
pub mod phase;
pub mod route;
pub mod serve;
pub mod stack;
