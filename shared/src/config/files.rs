//! Secrets and other files named by variables: `NAME` or `NAME_FILE` for every secret, so that a
//! Docker or Kubernetes secret mounted as a file never has to pass through the environment.

use secrecy::SecretString;

use super::{ConfigError, Env, VarDoc, describe};

/// A key or token with no default: `name` exactly as set (the callers split and trim lists), or
/// the contents of the file `name_FILE` names (a Docker or Kubernetes secret mounted as a file).
/// Unset or empty is `None`; both set is an error naming both.
pub fn secret(env: &dyn Env, name: &str) -> Result<Option<SecretString>, ConfigError> {
    secret_or(env, name, None)
}

/// Like [`secret`], for a variable whose `--help` shows `default` (a value, or the variable it
/// falls back to); the caller applies it when this returns `None`.
pub fn secret_or(
    env: &dyn Env,
    name: &str,
    default: Option<&str>,
) -> Result<Option<SecretString>, ConfigError> {
    let file_var = format!("{name}_FILE");
    for (var, default) in [(name, default), (file_var.as_str(), None)] {
        env.describe(VarDoc {
            name: var.to_owned(),
            default: default.map(str::to_owned),
            range: None,
            secret: true,
        });
    }
    let set = |var: &str| env.get(var).filter(|v| !v.trim().is_empty());
    match (set(name), set(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::Var {
            name: format!("{name} and {file_var}"),
            reason: "both are set; set one".into(),
        }),
        (Some(value), None) => Ok(Some(SecretString::from(value))),
        (None, Some(path)) => {
            let text = read_file(&file_var, path.trim())?;
            let text = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            if text.is_empty() {
                return Err(ConfigError::Var {
                    name: file_var,
                    reason: format!("{} is empty", path.trim()),
                });
            }
            Ok(Some(SecretString::from(text.to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// The text of the file at `path`, which variable `var` names. The error names both, never what
/// the file holds.
pub fn read_file(var: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Var {
        name: var.to_owned(),
        reason: format!("cannot read {path}: {e}"),
    })
}

/// A path to a file that must be readable at start (a certificate or key handed to a client
/// library that only reads it later); `None` when unset or empty.
pub fn readable_file(env: &dyn Env, name: &str) -> Result<Option<std::path::PathBuf>, ConfigError> {
    describe(env, name, None, None);
    let Some(path) = env
        .get(name)
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.len() > 0 => Ok(Some(path.into())),
        Ok(_) => Err(ConfigError::Var {
            name: name.to_owned(),
            reason: format!("{path} is empty"),
        }),
        Err(e) => Err(ConfigError::Var {
            name: name.to_owned(),
            reason: format!("cannot read {path}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn temp_file(tag: &str, contents: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("ingest-config-test-{}-{tag}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn exposed(secret: Option<SecretString>) -> Option<String> {
        secret.map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn a_secret_is_read_from_its_file_with_the_trailing_newline_trimmed() {
        for (tag, contents, expected) in [
            ("lf", "s3cret\n", "s3cret"),
            ("crlf", "s3cret\r\n", "s3cret"),
            ("bare", "s3cret", "s3cret"),
            ("two", "s3cret\n\n", "s3cret\n"),
            ("inner", " a,b \n", " a,b "),
        ] {
            let path = temp_file(tag, contents);
            let vars = env(&[("KEY_FILE", path.to_str().unwrap())]);
            assert_eq!(
                exposed(secret(&vars, "KEY").unwrap()).as_deref(),
                Some(expected),
                "{tag}"
            );
            std::fs::remove_file(path).unwrap();
        }
        assert_eq!(
            exposed(secret(&env(&[("KEY", "plain")]), "KEY").unwrap()).as_deref(),
            Some("plain")
        );
        assert!(
            secret(&env(&[("KEY", " "), ("KEY_FILE", "")]), "KEY")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn both_set_is_an_error_naming_both() {
        let path = temp_file("both", "from-file\n");
        let vars = env(&[("KEY", "plain"), ("KEY_FILE", path.to_str().unwrap())]);
        let err = secret(&vars, "KEY").unwrap_err().to_string();
        std::fs::remove_file(path).unwrap();
        assert!(err.contains("KEY and KEY_FILE"), "{err}");
        assert!(
            !err.contains("plain") && !err.contains("from-file"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_the_variable_and_path() {
        let missing = "/nonexistent/ingest/key";
        let err = secret(&env(&[("KEY_FILE", missing)]), "KEY")
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY_FILE") && err.contains(missing), "{err}");
        for (tag, contents) in [("empty", ""), ("newline", "\n")] {
            let path = temp_file(tag, contents);
            let vars = env(&[("KEY_FILE", path.to_str().unwrap())]);
            let err = secret(&vars, "KEY").unwrap_err().to_string();
            std::fs::remove_file(&path).unwrap();
            assert!(err.contains("KEY_FILE") && err.contains("empty"), "{err}");
        }
    }

    #[test]
    fn help_lists_the_file_variant_beside_the_variable_as_secret() {
        let vars = crate::cli::variables(|env| secret(env, "KEY"));
        let listed: Vec<(&str, bool)> = vars.iter().map(|v| (v.name.as_str(), v.secret)).collect();
        assert_eq!(listed, [("KEY", true), ("KEY_FILE", true)]);
    }
}
