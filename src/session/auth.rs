//! Offering the credential: public keys in order, an agent's identities,
//! a password (also as keyboard-interactive), or a prompt callback.

use std::net::SocketAddr;

use log::{debug, warn};
use secrecy::{ExposeSecret, SecretString};
use ssh2::{KeyboardInteractivePrompt, Prompt};

use super::{AuthMethod, SessionBuilder};
use crate::credential::{Loaded, LoadedKey};
use crate::error::ssh2_kind;
use crate::{AuthPrompt, Error, ErrorKind, HostKey, Result};

impl SessionBuilder {
    /// Maps an error raised during authentication that is not a refusal.
    fn auth_stage_error(&self, err: ssh2::Error, local: SocketAddr) -> Error {
        match ssh2_kind(&err) {
            ErrorKind::Timeout => Error::Timeout {
                operation: format!("authentication on {}:{}", self.host, self.port),
                timeout: self.timeout,
            },
            ErrorKind::Disconnected => self.disconnected("authentication", local, err),
            _ => Error::ssh(
                format!("authentication on {}:{} failed", self.host, self.port),
                err,
            ),
        }
    }

    pub(super) fn authenticate(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        loaded: &Loaded,
        local: SocketAddr,
    ) -> Result<AuthMethod> {
        // The `none` request: the server answers with the methods it allows.
        let allowed = ssh
            .auth_methods(user)
            .map_err(|e| self.auth_stage_error(e, local))?;
        if ssh.authenticated() {
            return Ok(AuthMethod::None);
        }
        let allowed = split_methods(allowed);
        debug!("{}:{} allows: {}", self.host, self.port, allowed.join(","));
        let offers = |m: &str| allowed.iter().any(|a| a == m);

        let mut tried = Vec::new();
        match loaded {
            Loaded::Keys(keys) if offers("publickey") => {
                for (index, key) in keys.iter().enumerate() {
                    tried.push(key.describe());
                    let result = ssh.userauth_pubkey_memory(
                        user,
                        key.public.as_deref(),
                        &key.private,
                        key.passphrase.as_ref().map(|p| p.expose_secret()),
                    );
                    if self.settle(ssh, result, Some(key), local)? {
                        if index > 0 {
                            warn!(
                                "{}:{} still accepts only an older key: {} ({}); refused: {}",
                                self.host,
                                self.port,
                                key.label,
                                key.describe(),
                                keys[..index]
                                    .iter()
                                    .map(|k| k.label.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                        }
                        return Ok(AuthMethod::PublicKey {
                            fingerprint: key.fingerprint.clone(),
                            label: key.label.clone(),
                        });
                    }
                }
            }
            Loaded::Keys(keys) => tried.extend(keys.iter().map(LoadedKey::describe)),
            Loaded::Password(pw) if offers("password") => {
                tried.push("password".to_string());
                let result = ssh.userauth_password(user, pw.expose_secret());
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::Password);
                }
            }
            Loaded::Password(pw) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive (password)".to_string());
                let mut prompter = PasswordPrompter {
                    password: pw,
                    rounds: 0,
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::KeyboardInteractive);
                }
            }
            Loaded::Agent(socket) if offers("publickey") => {
                if let Some(method) =
                    self.auth_agent(ssh, user, socket.as_deref(), local, &mut tried)?
                {
                    return Ok(method);
                }
            }
            Loaded::KeyboardInteractive(responder) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive".to_string());
                let mut prompter = CallbackPrompter {
                    responder: responder.as_ref(),
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if self.settle(ssh, result, None, local)? {
                    return Ok(AuthMethod::KeyboardInteractive);
                }
            }
            // The server does not offer what we have.
            Loaded::Password(_) => tried.push("password".to_string()),
            Loaded::Agent(_) => tried.push("publickey (ssh-agent)".to_string()),
            Loaded::KeyboardInteractive(_) => tried.push("keyboard-interactive".to_string()),
        }
        // Ask again: the list may have changed after a partial success.
        let allowed = ssh.auth_methods(user).map(split_methods).unwrap_or(allowed);
        Err(Error::Auth {
            user: user.to_string(),
            host: self.host.clone(),
            port: self.port,
            tried,
            allowed,
            source: None,
        })
    }

    /// Tries every identity the agent holds, in the agent's order.
    fn auth_agent(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        socket: Option<&std::path::Path>,
        local: SocketAddr,
        tried: &mut Vec<String>,
    ) -> Result<Option<AuthMethod>> {
        let where_ =
            socket.map_or_else(|| "SSH_AUTH_SOCK".to_string(), |p| p.display().to_string());
        let (path, from_env) = match socket {
            Some(p) => (Some(p.to_path_buf()), false),
            None => (
                std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|v| !v.is_empty())
                    .map(std::path::PathBuf::from),
                true,
            ),
        };
        let agent_error = |what: &str| {
            let path = path.clone();
            let what = what.to_string();
            move |e: ssh2::Error| Error::Agent {
                socket: path,
                from_env,
                reason: format!("{what}: {}", e.message()),
                source: Some(Box::new(e)),
            }
        };
        if from_env && path.is_none() {
            return Err(Error::Agent {
                socket: None,
                from_env,
                reason: String::new(),
                source: None,
            });
        }
        let mut agent = ssh.agent().map_err(agent_error("cannot start"))?;
        if let Some(socket) = socket {
            agent
                .set_identity_path(socket)
                .map_err(agent_error("cannot use the socket"))?;
        }
        agent.connect().map_err(agent_error("cannot connect"))?;
        agent
            .list_identities()
            .map_err(agent_error("cannot list its keys"))?;
        let identities = agent
            .identities()
            .map_err(agent_error("cannot list its keys"))?;
        if identities.is_empty() {
            tried.push(format!("publickey (ssh-agent {where_} holds no key)"));
        }
        let mut accepted = None;
        for identity in &identities {
            let fingerprint = HostKey::from_blob(identity.blob())
                .map(|k| k.fingerprint())
                .ok();
            let label = identity.comment().to_string();
            tried.push(format!(
                "publickey {label} {} (ssh-agent)",
                fingerprint.as_deref().unwrap_or("?")
            ));
            let result = agent.userauth(user, identity);
            if self.settle(ssh, result, None, local)? {
                accepted = Some(AuthMethod::PublicKey { fingerprint, label });
                break;
            }
        }
        let _ = agent.disconnect();
        Ok(accepted)
    }

    /// The outcome of one authentication attempt: `Ok(true)` when we are in,
    /// `Ok(false)` when the server refused (or wants another method too),
    /// an error when the attempt could not be made (key unusable, hang-up,
    /// timeout).
    fn settle(
        &self,
        ssh: &ssh2::Session,
        result: std::result::Result<(), ssh2::Error>,
        key: Option<&LoadedKey>,
        local: SocketAddr,
    ) -> Result<bool> {
        match result {
            Ok(()) => Ok(ssh.authenticated()),
            Err(e) => {
                if let Some(err) = key.and_then(|k| k.auth_error(&e)) {
                    return Err(err);
                }
                if ssh2_kind(&e) == ErrorKind::Auth {
                    Ok(false)
                } else {
                    Err(self.auth_stage_error(e, local))
                }
            }
        }
    }
}

/// Answers the password to the first round of echo-off prompts; later
/// rounds (a second factor, say) get empty answers, so the password is
/// never sent twice.
struct PasswordPrompter<'a> {
    password: &'a SecretString,
    rounds: u32,
}

impl KeyboardInteractivePrompt for PasswordPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        let answer = self.rounds == 0 && prompts.iter().any(|p| !p.echo);
        if answer {
            self.rounds += 1;
        }
        prompts
            .iter()
            .map(|p| {
                if answer && !p.echo {
                    self.password.expose_secret().to_string()
                } else {
                    String::new()
                }
            })
            .collect()
    }
}

/// Hands each keyboard-interactive round to the caller's responder.
struct CallbackPrompter<'a> {
    responder: &'a crate::credential::Responder,
}

impl KeyboardInteractivePrompt for CallbackPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        let ours: Vec<AuthPrompt> = prompts
            .iter()
            .map(|p| AuthPrompt::new(p.text.to_string(), p.echo))
            .collect();
        let answers = (self.responder)(instructions, &ours);
        // One answer per prompt, whatever the responder returned.
        (0..prompts.len())
            .map(|i| {
                answers
                    .get(i)
                    .map(|a| a.expose_secret().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn split_methods(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_methods_trims_and_drops_empties() {
        assert_eq!(
            split_methods("publickey, password,,"),
            ["publickey", "password"]
        );
        assert!(split_methods("").is_empty());
    }
}
