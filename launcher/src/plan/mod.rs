//! The validated plan of a run: command-line options over the config file,
//! pins checked, lock verified. Everything that can make culaunch itself fail
//! (exit 125) fails here, before the command starts.

pub mod config;
pub mod lock;
pub mod pins;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::RunArgs;
use crate::error::Error;
use pins::{Pin, Source};

pub struct Plan {
    pub trace: Option<PathBuf>,
    pub all_libs: bool,
    pub quiet: bool,
    pub summary_json: Option<PathBuf>,
    pub strict: bool,
    /// One per SONAME, in the order the module tries them.
    pub pins: Vec<Pin>,
}

impl Plan {
    pub fn build(args: &RunArgs) -> Result<Plan, Error> {
        let file = args.config.as_deref().map(config::load).transpose()?.unwrap_or_default();
        let locked = args.locked.clone().or(file.locked);
        let toolkit = args.toolkit.clone().or(file.toolkit);

        // Precedence: command line, config file, lock file, toolkit scan.
        let mut by_soname: BTreeMap<String, Pin> = BTreeMap::new();
        let mut add = |pin: Pin, exclusive: bool| -> Result<(), Error> {
            match by_soname.get(&pin.soname) {
                Some(first) if exclusive && first.source == pin.source => Err(Error::DuplicatePin {
                    soname: pin.soname.clone(),
                    first: first.path.clone(),
                    second: pin.path.clone(),
                }),
                Some(_) => Ok(()),
                None => {
                    by_soname.insert(pin.soname.clone(), pin);
                    Ok(())
                }
            }
        };
        for p in &args.pins {
            add(pins::validate(&p.soname, &p.path, Source::CommandLine)?, true)?;
        }
        for (soname, path) in &file.pins {
            add(pins::validate(soname, path, Source::Config)?, true)?;
        }
        let lock = locked.as_deref().map(lock::read).transpose()?;
        if let Some(lock) = &lock {
            let files = lock::verify(lock)?;
            for (e, file) in lock.libs.iter().zip(files) {
                let pin = pins::validate(&e.soname, &e.path, Source::Lock)?;
                add(pins::Pin { locked_file: Some(file), ..pin }, true)?;
            }
        }
        if let Some(dir) = &toolkit {
            for pin in pins::scan_toolkit(dir)? {
                add(pin, false)?;
            }
        }
        if let Some(json) = &args.summary_json {
            crate::input::check_output(json).map_err(|source| Error::SummaryFile { path: json.clone(), source })?;
        }
        Ok(Plan {
            trace: args.trace.as_deref().map(crate::trace_file::expand_here).transpose()?.or(file.trace),
            all_libs: args.all_libs || file.all_libs,
            quiet: args.quiet,
            summary_json: args.summary_json.clone(),
            strict: args.strict || file.strict || lock.is_some(),
            pins: by_soname.into_values().collect(),
        })
    }
}
