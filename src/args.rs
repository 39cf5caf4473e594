//! The command-line conventions every `realtime` command shares, kept in one reader so that
//! each flag gets them without asking for them:
//!
//! - a flag's value follows it as the next word (`--addr 0.0.0.0:80`) or after an `=` in the
//!   same word (`--addr=0.0.0.0:80`); `--addr=` with nothing after the `=` is an error, since
//!   an empty value is almost always a shell variable that was not set;
//! - a switch, a flag that takes no value (`--json`), given one (`--json=1`) is an error;
//! - the server's flags are also read from the environment, `--max-connections` from
//!   `REALTIME_MAX_CONNECTIONS` ([`environment_variable`]): a container is configured by its
//!   environment. The command line wins over it, a switch's variable takes `1`, `0`, `true` or
//!   `false`, and an error caused by a variable names the variable.
//!
//! Which flags exist, and which of them are switches, is read from the command's usage text
//! ([`documented_flags`]): the text that documents every flag for the user is the one table of
//! flags, so a flag added to it and to its command's parser gets all of the above, and its
//! environment variable is listed by `--help`.
//!
//! A parser asks [`Args::next_flag`] for each flag and [`Args::value`] for its value, exactly
//! as it would pull words from an iterator; it never sees where the words came from.

#![forbid(unsafe_code)]

use std::ffi::OsString;

/// The exit status every command keeps, as `--help` texts state it.
pub const EXIT_STATUS_HELP: &str = "\
Exit status: 0 success; 1 a failure at run time (cannot listen, cannot reach
the server, a refused publish, a bench rule broken); 2 a usage error (an
unknown option, a bad value, a missing argument).
";

/// The prefix of every environment variable the server reads.
pub const ENVIRONMENT_PREFIX: &str = "REALTIME_";

/// A flag a usage text documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocumentedFlag {
    /// `--max-connections`.
    pub name: &'static str,
    /// Whether a value follows it (its usage line names one: `--max-connections N`); a flag
    /// without one is a switch.
    pub takes_value: bool,
}

/// Every `--flag` a usage text documents, in order: each line whose first word is a long flag,
/// with a value if a word follows it after one space (`  --addr HOST:PORT   where...`) and a
/// switch if the description follows after several (`  --json            one line...`).
/// `-h, --help` lines start with a short flag and are not settings.
pub fn documented_flags(usage: &'static str) -> Vec<DocumentedFlag> {
    usage
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().strip_prefix("--").map(|_| line.trim_start())?;
            let name_end = line.find(' ').unwrap_or(line.len());
            let (name, after) = line.split_at(name_end);
            let takes_value = after.strip_prefix(' ').is_some_and(|rest| rest.starts_with(|c: char| c != ' '));
            Some(DocumentedFlag { name, takes_value })
        })
        .collect()
}

/// The environment variable of a flag: `--max-connections` is `REALTIME_MAX_CONNECTIONS`.
pub fn environment_variable(flag: &str) -> String {
    let name = flag.trim_start_matches('-').replace('-', "_").to_ascii_uppercase();
    format!("{ENVIRONMENT_PREFIX}{name}")
}

/// The `--help` paragraph that states the rule and lists every variable of `flags`.
pub fn environment_help(flags: &[DocumentedFlag]) -> String {
    let mut text = String::from(
        "Environment: each option is also read from REALTIME_<OPTION> (upper case,\n\
         dashes as underscores; a switch takes 1, 0, true or false). The command line\n\
         wins over the environment; a variable set but empty is an error.\n",
    );
    let mut line = String::from(" ");
    for flag in flags {
        let variable = environment_variable(flag.name);
        if line.len() + 1 + variable.len() > 79 {
            text.push_str(&line);
            text.push('\n');
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(&variable);
    }
    text.push_str(&line);
    text.push('\n');
    text
}

/// A flag's value read from its environment variable, or why it cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentSetting {
    pub flag: DocumentedFlag,
    pub variable: String,
    value: Result<String, String>,
}

/// Reads the variable of every flag in `flags` that is set, through `lookup` (the process's
/// environment, or a table in tests). Problems with a value (not UTF-8, empty) are kept and
/// reported only if the command line does not override the variable.
pub fn read_environment(
    flags: &[DocumentedFlag],
    lookup: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<EnvironmentSetting> {
    flags
        .iter()
        .filter_map(|&flag| {
            let variable = environment_variable(flag.name);
            let value = match lookup(&variable)?.into_string() {
                Ok(value) if value.is_empty() => {
                    // An empty value is most often `VAR=$UNSET`: refusing it keeps, for
                    // example, an unset secret from starting an open server.
                    Err(format!("{variable} is set but empty (unset it or give it a value)"))
                }
                Ok(value) => Ok(value),
                Err(_) => Err(format!("{variable}: the value is not valid UTF-8")),
            };
            Some(EnvironmentSetting { flag, variable, value })
        })
        .collect()
}

/// A command's arguments, flag by flag: the command line's words, then the environment's
/// settings for the flags the command line did not give.
pub struct Args<'a> {
    words: std::slice::Iter<'a, String>,
    environment: std::slice::Iter<'a, EnvironmentSetting>,
    /// Flags the command line gave, which the environment must not override.
    given: Vec<&'a str>,
    /// The flag being read.
    flag: &'a str,
    /// Its value, when it came with it (`--flag=value`, or from the environment) and has not
    /// been taken yet.
    attached: Option<&'a str>,
    /// The variable the flag being read came from, if it came from the environment.
    variable: Option<&'a str>,
}

impl<'a> Args<'a> {
    /// The words after the command's name.
    pub fn new(words: &'a [String]) -> Args<'a> {
        Args::with_environment(words, &[])
    }

    /// The words, then `environment` for every flag they do not give.
    pub fn with_environment(words: &'a [String], environment: &'a [EnvironmentSetting]) -> Args<'a> {
        Args {
            words: words.iter(),
            environment: environment.iter(),
            given: Vec::new(),
            flag: "",
            attached: None,
            variable: None,
        }
    }

    /// The next flag (or positional word), or `None` after the last. The previous flag must
    /// have taken the value attached to it: a switch given `=value` is an error here.
    pub fn next_flag(&mut self) -> Result<Option<&'a str>, String> {
        if let Some(value) = self.attached.take() {
            return Err(match self.variable {
                Some(variable) => format!("{variable}: expected 1, 0, true or false, got '{value}'"),
                None => format!("{} takes no value, got '{}={value}'", self.flag, self.flag),
            });
        }
        if let Some(word) = self.words.next() {
            let (flag, attached) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (word.as_str(), None),
            };
            self.given.push(flag);
            (self.flag, self.attached) = (flag, attached);
            return Ok(Some(flag));
        }
        for setting in self.environment.by_ref() {
            if self.given.contains(&setting.flag.name) {
                continue; // the command line wins
            }
            let value = setting.value.as_deref().map_err(Clone::clone)?;
            self.variable = Some(&setting.variable);
            self.flag = setting.flag.name;
            if setting.flag.takes_value {
                self.attached = Some(value);
                return Ok(Some(setting.flag.name));
            }
            match value.to_ascii_lowercase().as_str() {
                "1" | "true" => return Ok(Some(setting.flag.name)),
                "0" | "false" => continue,
                _ => {
                    self.attached = Some(value);
                    return self.next_flag(); // reports the value
                }
            }
        }
        // What the command checks after the last flag is not about any one variable.
        self.variable = None;
        Ok(None)
    }

    /// The value of the flag just read: after its `=`, from its variable, or the next word.
    pub fn value(&mut self) -> Result<&'a str, String> {
        match self.attached.take() {
            Some("") => {
                Err(format!("{flag}= has an empty value (give {flag} VALUE or {flag}=VALUE)", flag = self.flag))
            }
            Some(value) => Ok(value),
            None => self.words.next().map(String::as_str).ok_or_else(|| format!("{} needs a value", self.flag)),
        }
    }

    /// `error`, raised while reading the current flag, told in terms of where the flag came
    /// from: an error about `--max-connections` read from the environment names
    /// `REALTIME_MAX_CONNECTIONS` instead, since that is what the user has to fix.
    pub fn explain(&self, error: String) -> String {
        let Some(variable) = self.variable else { return error };
        if error.starts_with(variable) {
            return error;
        }
        match error.strip_prefix(self.flag).and_then(|rest| rest.strip_prefix(':')) {
            Some(rest) => format!("{variable}:{rest}"),
            None => format!("{variable}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &str = "\
Usage: demo [OPTIONS]
  --addr HOST:PORT          listen address                        [127.0.0.1:8080]
  --max-connections N       open connections before 503
                            (a continuation line --not-a-flag)
  --verbose                 a switch
  -h, --help                this text
";

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    /// Runs a little parser over `line` and `environment`: every (flag, value) it reads.
    fn read(line: &str, environment: &[(&str, &str)]) -> Result<Vec<(String, Option<String>)>, String> {
        let words = words(line);
        let flags = documented_flags(USAGE);
        let lookup = |name: &str| environment.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(*v));
        let settings = read_environment(&flags, &lookup);
        let mut args = Args::with_environment(&words, &settings);
        let mut read = Vec::new();
        let mut parse = || -> Result<(), String> {
            while let Some(flag) = args.next_flag()? {
                let value = match flag {
                    "--addr" | "--max-connections" => Some(args.value()?.to_string()),
                    "--verbose" => None,
                    other => return Err(format!("unknown option '{other}'")),
                };
                read.push((flag.to_string(), value));
            }
            Ok(())
        };
        let result = parse();
        result.map_err(|error| args.explain(error))?;
        Ok(read)
    }

    fn set(flag: &str, value: Option<&str>) -> (String, Option<String>) {
        (flag.to_string(), value.map(String::from))
    }

    #[test]
    fn the_usage_text_is_the_table_of_flags_and_whether_they_take_a_value() {
        let flags = documented_flags(USAGE);
        let described: Vec<(&str, bool)> = flags.iter().map(|f| (f.name, f.takes_value)).collect();
        assert_eq!(described, [("--addr", true), ("--max-connections", true), ("--verbose", false)]);
    }

    #[test]
    fn a_value_follows_its_flag_as_the_next_word_or_after_an_equals_sign() {
        let expected = vec![set("--addr", Some("127.0.0.1:0")), set("--max-connections", Some("5"))];
        assert_eq!(read("--addr 127.0.0.1:0 --max-connections 5", &[]), Ok(expected.clone()));
        assert_eq!(read("--addr=127.0.0.1:0 --max-connections=5", &[]), Ok(expected));
        assert_eq!(read("--addr=a=b", &[]), Ok(vec![set("--addr", Some("a=b"))]), "only the first = splits");
    }

    #[test]
    fn an_empty_value_after_the_equals_sign_is_an_error_that_says_so() {
        let error = read("--max-connections=", &[]).unwrap_err();
        assert!(error.contains("--max-connections=") && error.contains("empty"), "{error}");
    }

    #[test]
    fn a_missing_value_is_an_error_naming_the_flag() {
        assert_eq!(read("--addr", &[]), Err("--addr needs a value".into()));
    }

    #[test]
    fn a_switch_given_a_value_is_an_error() {
        assert_eq!(read("--verbose", &[]), Ok(vec![set("--verbose", None)]));
        assert_eq!(read("--verbose=1", &[]), Err("--verbose takes no value, got '--verbose=1'".into()));
        assert!(read("--verbose= --addr x", &[]).is_err());
    }

    #[test]
    fn the_environment_sets_the_flags_the_command_line_does_not_give() {
        let environment = [("REALTIME_MAX_CONNECTIONS", "7"), ("REALTIME_ADDR", "0.0.0.0:80")];
        assert_eq!(
            read("--addr 127.0.0.1:0", &environment),
            Ok(vec![set("--addr", Some("127.0.0.1:0")), set("--max-connections", Some("7"))])
        );
        assert_eq!(
            read("--addr=127.0.0.1:0", &environment),
            Ok(vec![set("--addr", Some("127.0.0.1:0")), set("--max-connections", Some("7"))])
        );
    }

    #[test]
    fn a_switch_variable_takes_1_0_true_or_false() {
        for on in ["1", "true", "TRUE"] {
            assert_eq!(read("", &[("REALTIME_VERBOSE", on)]), Ok(vec![set("--verbose", None)]), "{on}");
        }
        for off in ["0", "false"] {
            assert_eq!(read("", &[("REALTIME_VERBOSE", off)]), Ok(vec![]), "{off}");
        }
        assert_eq!(
            read("", &[("REALTIME_VERBOSE", "yes")]),
            Err("REALTIME_VERBOSE: expected 1, 0, true or false, got 'yes'".into())
        );
    }

    #[test]
    fn an_error_from_the_environment_names_the_variable() {
        let lookup = |name: &str| (name == "REALTIME_MAX_CONNECTIONS").then(|| OsString::from("lots"));
        let flags = documented_flags(USAGE);
        let settings = read_environment(&flags, &lookup);
        let words = Vec::new();
        let mut args = Args::with_environment(&words, &settings);
        assert_eq!(args.next_flag(), Ok(Some("--max-connections")));
        assert_eq!(args.value(), Ok("lots"));
        let error = args.explain("--max-connections: expected a positive whole number, got 'lots'".into());
        assert_eq!(error, "REALTIME_MAX_CONNECTIONS: expected a positive whole number, got 'lots'");
        assert_eq!(args.explain("too large".into()), "REALTIME_MAX_CONNECTIONS: too large");
    }

    #[test]
    fn an_empty_variable_is_an_error_unless_the_command_line_overrides_it() {
        let error = read("", &[("REALTIME_ADDR", "")]).unwrap_err();
        assert!(error.starts_with("REALTIME_ADDR is set but empty"), "{error}");
        assert_eq!(read("--addr x", &[("REALTIME_ADDR", "")]), Ok(vec![set("--addr", Some("x"))]));
    }

    #[test]
    fn variables_are_the_flags_in_upper_case_with_underscores() {
        assert_eq!(environment_variable("--addr"), "REALTIME_ADDR");
        assert_eq!(environment_variable("--max-conns-per-ip"), "REALTIME_MAX_CONNS_PER_IP");
        let help = environment_help(&documented_flags(USAGE));
        assert!(help.contains("REALTIME_ADDR REALTIME_MAX_CONNECTIONS REALTIME_VERBOSE"), "{help}");
        assert!(help.lines().all(|line| line.len() < 80), "{help}");
    }
}
