//! Python's installed distributions, read as pip leaves them: versions and
//! specifiers (PEP 440), requirements and markers (PEP 508), and a site's
//! METADATA and RECORD files.

pub mod requirement;
pub mod site;
pub mod version;
