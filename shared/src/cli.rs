//! The command line of both binaries. `--help` lists every variable the configuration reads,
//! with its default and range, taken from the very calls that read it (config.rs), so the two
//! cannot disagree. Each variable can also be given as a flag (`--batch-size 100` for
//! `BATCH_SIZE`), which wins over the environment; the configuration then reads and checks it
//! as it would the variable, with the same messages and exit code.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;

use clap::builder::OsStringValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command};

use crate::build_info;
use crate::config::{ConfigError, Env, ProcessEnv, VarDoc};

const AFTER_HELP: &str = "\
Every option is also read from the environment variable named in it, and from a .env file in
the working directory: the environment wins over .env, and a flag over both. RUST_LOG, when
set, wins over LOG_LEVEL and takes per-module filters. A bad value stops the binary with one
line naming the variable, and exit code 2. docs/configuration.md says what each one does.";

/// Reads nothing, and keeps what the configuration says it reads.
#[derive(Default)]
struct Listing(RefCell<Vec<VarDoc>>);

impl Env for Listing {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }

    fn describe(&self, var: VarDoc) {
        let mut vars = self.0.borrow_mut();
        if !vars.iter().any(|known| known.name == var.name) {
            vars.push(var);
        }
    }
}

/// Every variable `read` reads, in the order it reads them, as if none were set.
pub fn variables<T>(read: impl FnOnce(&dyn Env) -> Result<T, ConfigError>) -> Vec<VarDoc> {
    let listing = Listing::default();
    // Defaults are valid, and even if one were not, what was read up to it is still listed.
    let _ = read(&listing);
    listing.0.into_inner()
}

/// `command` with one option per variable, and the version (with the commit, for `--version`)
/// that `build_info` reports.
pub fn command(command: Command, vars: &[VarDoc]) -> Command {
    command
        .version(build_info::VERSION)
        .long_version(build_info::LONG_VERSION)
        .args(vars.iter().map(option))
        .after_help(AFTER_HELP)
}

fn option(var: &VarDoc) -> Arg {
    let mut help = format!("[default: {}]", var.default.as_deref().unwrap_or("unset"));
    if let Some(range) = &var.range {
        help.push_str(&format!(" [range: {range}]"));
    }
    if var.secret {
        help.push_str(" (secret: prefer the environment or .env, as flags show in `ps`)");
    }
    Arg::new(var.name.clone())
        .long(var.name.to_ascii_lowercase().replace('_', "-"))
        .value_name(var.name.clone())
        .env(var.name.clone())
        // The values may be keys or passwords.
        .hide_env_values(true)
        // Not `String`: a variable that is not UTF-8 stays "unset" for the configuration, as
        // it was before there was a command line.
        .value_parser(OsStringValueParser::new())
        .action(ArgAction::Set)
        .help(help)
}

/// The variables given as flags, over the process environment.
pub struct CommandLine {
    flags: HashMap<String, String>,
}

impl Env for CommandLine {
    fn get(&self, name: &str) -> Option<String> {
        self.flags
            .get(name)
            .cloned()
            .or_else(|| ProcessEnv.get(name))
    }
}

/// Parses the process's arguments. `--help`, `--version` and usage errors are answered by clap,
/// which exits (0 for the first two, 2 for an error, as for a bad configuration).
pub fn parse(command: Command, vars: &[VarDoc]) -> CommandLine {
    parse_from(command, vars, std::env::args_os())
}

fn parse_from(
    command: Command,
    vars: &[VarDoc],
    args: impl IntoIterator<Item = OsString>,
) -> CommandLine {
    let mut command = self::command(command, vars);
    let matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    let mut flags = HashMap::new();
    for var in vars {
        if matches.value_source(&var.name) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(value) = matches.get_one::<OsString>(&var.name) else {
            continue;
        };
        match value.to_str() {
            Some(value) => flags.insert(var.name.clone(), value.to_owned()),
            None => command
                .error(
                    ErrorKind::InvalidUtf8,
                    format!("--{} is not UTF-8", var.name),
                )
                .exit(),
        };
    }
    CommandLine { flags }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_in_range, parse_opt_in_range, secret, string_or};

    fn read(env: &dyn Env) -> Result<(u32, String, Option<u32>), ConfigError> {
        let _key = secret(env, "CLI_TEST_KEY");
        Ok((
            parse_in_range(env, "CLI_TEST_SIZE", 5, 1..=10)?,
            string_or(env, "CLI_TEST_NAME", "x"),
            parse_opt_in_range(env, "CLI_TEST_DAYS", 1..=7)?,
        ))
    }

    #[test]
    fn the_listing_is_what_the_configuration_reads() {
        let vars = variables(read);
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CLI_TEST_KEY",
                "CLI_TEST_KEY_FILE",
                "CLI_TEST_SIZE",
                "CLI_TEST_NAME",
                "CLI_TEST_DAYS"
            ]
        );
        assert_eq!(vars[2].default.as_deref(), Some("5"));
        assert_eq!(vars[2].range.as_deref(), Some("1..=10"));
        assert!(vars[0].secret && vars[1].secret && !vars[2].secret);
        assert_eq!(vars[4].default, None);
    }

    #[test]
    fn a_flag_wins_and_is_checked_like_the_variable() {
        let vars = variables(read);
        let args = ["bin", "--cli-test-size", "7", "--cli-test-name=y"].map(OsString::from);
        let env = parse_from(Command::new("bin"), &vars, args);
        assert_eq!(read(&env).unwrap().0, 7);
        assert_eq!(read(&env).unwrap().1, "y");
        let args = ["bin", "--cli-test-size", "70"].map(OsString::from);
        let env = parse_from(Command::new("bin"), &vars, args);
        assert!(
            read(&env)
                .unwrap_err()
                .to_string()
                .contains("CLI_TEST_SIZE")
        );
    }

    #[test]
    fn help_shows_each_variable_with_its_default_and_range() {
        let vars = variables(read);
        let help = command(Command::new("bin"), &vars)
            .render_long_help()
            .to_string();
        for needle in [
            "--cli-test-size <CLI_TEST_SIZE>",
            "[default: 5]",
            "[range: 1..=10]",
            "[env: CLI_TEST_SIZE]",
        ] {
            assert!(help.contains(needle), "{needle} missing from\n{help}");
        }
    }
}
