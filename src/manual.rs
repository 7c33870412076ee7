//! Shell completion scripts and the manual page, generated from the clap
//! definitions in `config` so that they list exactly the flags the binary takes.
//! Both render into memory; `main` writes the bytes to stdout (a closed pipe is
//! then an error to report, not a panic inside a generator).

use crate::cli::Args;
use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

/// The command name that completions complete and the manual page documents.
pub const BIN_NAME: &str = "sqlalchemy-collectd-exporter";

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), BIN_NAME, &mut out);
    out
}

/// The manual page, section 1, in roff.
pub fn man_page() -> Vec<u8> {
    let man = clap_mangen::Man::new(Args::command())
        .date(env!("SCE_BUILD_DATE"))
        .source(format!("{BIN_NAME} {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; the results are checked all the same.
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        man.render_options_section(&mut out)?;
        man.render_subcommands_section(&mut out)?;
        operations().to_writer(&mut out)?;
        man.render_version_section(&mut out)
    })();
    if let Err(e) = rendered {
        out = format!(".\\\" rendering failed: {e}\n").into_bytes();
    }
    out
}

/// What the flags do not say: signals, exit status, files, where to read more.
fn operations() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["SIGNALS"]);
    r.control("TP", []);
    r.text([bold("SIGHUP")]);
    r.text([roman(
        "Re-reads the --collectd.auth-file and the --config.file; a file that does not \
         parse leaves the one in use unchanged and is logged.",
    )]);
    r.control("TP", []);
    r.text([bold("SIGINT"), roman(", "), bold("SIGTERM")]);
    r.text([roman("Shut down cleanly.")]);
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        "0 after a clean shutdown; 1 when a listen address cannot be bound or a file \
         cannot be read; 2 for a bad flag. Each error is one line on stderr.",
    )]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "The README (Install, Flags, the configuration file, the metrics), \
         collectd.conf(5), prometheus(1).",
    )]);
    r
}
