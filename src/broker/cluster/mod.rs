//! The sans-IO pieces a cluster of brokers is built on.
//!
//! A cluster of tinymqtt brokers exchanges messages through NATS: each message published on one
//! node travels under a NATS subject mapped from its MQTT topic, and each node subscribes on
//! NATS to the subject filters mapped from the filters its own sessions hold. [`subject`]
//! defines that mapping, both ways, so that NATS's matching of the mapped filters gives the
//! same answer as MQTT's matching of the originals. [`RemoteOutput`] is what a router with
//! [`BrokerConfig::cluster`](crate::broker::BrokerConfig::cluster) on hands to the other nodes
//! ([`Router::poll_remote`](crate::broker::Router::poll_remote)); what they send back comes in
//! through [`Router::handle_remote`](crate::broker::Router::handle_remote). A session moves
//! between nodes as a [`SessionImage`]
//! ([`Router::export_session`](crate::broker::Router::export_session),
//! [`Router::import_session`](crate::broker::Router::import_session)).

mod facade;
mod image;
mod moves;
mod seam;
pub mod subject;

pub use image::{ImageError, SessionImage, MAX_IMAGE_ENTRIES};
pub use moves::{Export, ImportError, MAX_ENDED};
pub use seam::{RemoteOutput, RemoteTicket};

pub use subject::{
    filter_to_subjects, subject_to_topic, topic_to_subject, SubjectError, SubjectFilters,
};
