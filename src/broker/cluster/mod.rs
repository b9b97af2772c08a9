//! The sans-IO pieces a cluster of brokers is built on.
//!
//! A cluster of tinymqtt brokers exchanges messages through NATS: each message published on one
//! node travels under a NATS subject mapped from its MQTT topic, and each node subscribes on
//! NATS to the subject filters mapped from the filters its own sessions hold. [`subject`]
//! defines that mapping, both ways, so that NATS's matching of the mapped filters gives the
//! same answer as MQTT's matching of the originals.

pub mod subject;

pub use subject::{
    filter_to_subjects, subject_to_topic, topic_to_subject, SubjectError, SubjectFilters,
};
