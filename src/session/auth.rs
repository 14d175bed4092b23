//! Offering the credential: public keys in order, an agent's identities,
//! a password (also as keyboard-interactive), or a prompt callback.

use std::net::SocketAddr;

use log::{debug, info, trace, warn};
use secrecy::{ExposeSecret, SecretString};
use ssh2::{KeyboardInteractivePrompt, Prompt};

use super::{AuthMethod, SessionBuilder};
use crate::credential::{Loaded, LoadedKey};
use crate::error::{code, ssh2_code, ssh2_kind};
use crate::{AuthPrompt, Error, ErrorKind, HostKey, Result};

impl SessionBuilder {
    /// Maps an error raised during authentication that is not a refusal.
    fn auth_stage_error(&self, err: ssh2::Error, local: SocketAddr) -> Error {
        match ssh2_kind(&err) {
            ErrorKind::Timeout => Error::Timeout {
                operation: format!("authentication on {}:{}", self.host, self.port),
                timeout: self.timeout,
            },
            ErrorKind::Disconnected => self.disconnected(Error::STAGE_AUTHENTICATION, local, err),
            _ => Error::ssh(
                format!("authentication on {}:{} failed", self.host, self.port),
                err,
            ),
        }
    }

    /// Authenticates as `user` with `loaded`, one step after another for
    /// a [`Credential::all`](crate::Credential::all): each step but the
    /// last must end in partial success (the server accepts it and wants
    /// more). The methods accepted, in order.
    pub(super) fn authenticate(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        loaded: &Loaded,
        local: SocketAddr,
    ) -> Result<Vec<AuthMethod>> {
        // The `none` request: the server answers with the methods it allows.
        trace!(
            "{}:{}: asks which methods {user} may use",
            self.host,
            self.port
        );
        let allowed = ssh
            .auth_methods(user)
            .map_err(|e| self.auth_stage_error(e, local))?;
        if ssh.authenticated() {
            return Ok(vec![AuthMethod::None]);
        }
        let mut allowed = split_methods(allowed);
        debug!("{}:{} allows: {}", self.host, self.port, allowed.join(","));
        let steps: Vec<&Loaded> = match loaded {
            Loaded::All(steps) => steps.iter().collect(),
            one => vec![one],
        };
        let mut accepted: Vec<AuthMethod> = Vec::new();
        let mut tried = Vec::new();
        let mut said = Vec::new();
        for step in steps {
            match self.offer(ssh, user, step, &allowed, local, &mut tried, &mut said)? {
                Offered::In(method) => {
                    accepted.push(method);
                    return Ok(accepted);
                }
                Offered::Partial(method, now) => {
                    info!(
                        "{}:{} accepted {method} (partial success); it wants more: {}",
                        self.host,
                        self.port,
                        now.join(",")
                    );
                    accepted.push(method);
                    allowed = now;
                    // What was tried for this factor was accepted.
                    tried.clear();
                }
                Offered::Refused => break,
            }
        }
        if let Some(banner) = auth_banner(ssh) {
            said.insert(0, banner);
        }
        Err(Error::Auth {
            user: user.to_string(),
            host: self.host.clone(),
            port: self.port,
            tried,
            allowed,
            accepted: accepted.iter().map(ToString::to_string).collect(),
            said,
            source: None,
        })
    }

    fn password_expired(&self, user: &str, said: Vec<String>) -> Error {
        Error::PasswordExpired {
            user: user.to_string(),
            host: self.host.clone(),
            port: self.port,
            said,
        }
    }

    /// Offers one credential (one step of a multi-factor one); what was
    /// tried goes to `tried`, what the server said in keyboard-interactive
    /// rounds to `said`.
    #[allow(clippy::too_many_arguments)] // the state of one authentication
    fn offer(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        loaded: &Loaded,
        allowed: &[String],
        local: SocketAddr,
        tried: &mut Vec<String>,
        said: &mut Vec<String>,
    ) -> Result<Offered> {
        let offers = |m: &str| allowed.iter().any(|a| a == m);
        // After a refusal: a changed list of methods is a partial success.
        let settle = |result, key: Option<&LoadedKey>, method: AuthMethod| {
            if self.settle(ssh, result, key, local)? {
                return Ok(Offered::In(method));
            }
            self.partial(ssh, user, allowed, local, method)
        };
        match loaded {
            Loaded::Keys(keys) if offers("publickey") => {
                for (index, key) in keys.iter().enumerate() {
                    tried.push(key.describe());
                    trace!("{}:{}: offers {}", self.host, self.port, key.describe());
                    let result = ssh.userauth_pubkey_memory(
                        user,
                        key.public.as_deref(),
                        &key.private,
                        key.passphrase.as_ref().map(|p| p.expose_secret()),
                    );
                    let method = AuthMethod::PublicKey {
                        fingerprint: key.fingerprint.clone(),
                        label: key.label.clone(),
                    };
                    let outcome = settle(result, Some(key), method)?;
                    if matches!(outcome, Offered::Refused) {
                        continue;
                    }
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
                    return Ok(outcome);
                }
                Ok(Offered::Refused)
            }
            Loaded::Keys(keys) => {
                tried.extend(keys.iter().map(LoadedKey::describe));
                Ok(Offered::Refused)
            }
            Loaded::Password(pw) if offers("password") => {
                tried.push("password".to_string());
                let result = ssh.userauth_password(user, pw.expose_secret());
                if let Err(e) = &result {
                    // SSH_MSG_USERAUTH_PASSWD_CHANGEREQ, which libssh2
                    // answers with this code when given no new password.
                    if ssh2_code(e) == code::PASSWORD_EXPIRED {
                        return Err(self.password_expired(user, vec![e.message().to_string()]));
                    }
                }
                settle(result, None, AuthMethod::Password)
            }
            Loaded::Password(pw) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive (password)".to_string());
                let mut prompter = PasswordPrompter {
                    password: pw,
                    rounds: 0,
                    heard: Heard::default(),
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if prompter.heard.expired {
                    return Err(self.password_expired(user, prompter.heard.said));
                }
                said.append(&mut prompter.heard.said);
                settle(result, None, AuthMethod::KeyboardInteractive)
            }
            Loaded::Agent(socket) if offers("publickey") => {
                match self.auth_agent(ssh, user, socket.as_deref(), local, tried)? {
                    Some(method) => Ok(Offered::In(method)),
                    None => self.partial(ssh, user, allowed, local, agent_method(tried)),
                }
            }
            Loaded::KeyboardInteractive(responder) if offers("keyboard-interactive") => {
                tried.push("keyboard-interactive".to_string());
                let mut prompter = CallbackPrompter {
                    responder: responder.as_ref(),
                    heard: Heard::default(),
                };
                let result = ssh.userauth_keyboard_interactive(user, &mut prompter);
                if prompter.heard.expired {
                    return Err(self.password_expired(user, prompter.heard.said));
                }
                said.append(&mut prompter.heard.said);
                settle(result, None, AuthMethod::KeyboardInteractive)
            }
            // The server does not offer what we have.
            Loaded::Password(_) => {
                tried.push("password".to_string());
                Ok(Offered::Refused)
            }
            Loaded::Agent(_) => {
                tried.push("publickey (ssh-agent)".to_string());
                Ok(Offered::Refused)
            }
            Loaded::KeyboardInteractive(_) => {
                tried.push("keyboard-interactive".to_string());
                Ok(Offered::Refused)
            }
            Loaded::All(_) => Err(Error::invalid(
                "credential",
                "Credential::all inside Credential::all (flattened when made)",
            )),
        }
    }

    /// After a refusal: asks the server again which methods it allows.
    /// A list that changed means it accepted `method` as one factor and
    /// wants another (partial success, which libssh2 reports as a plain
    /// failure); the same list, a refusal.
    fn partial(
        &self,
        ssh: &ssh2::Session,
        user: &str,
        allowed: &[String],
        local: SocketAddr,
        method: AuthMethod,
    ) -> Result<Offered> {
        let now = match ssh.auth_methods(user) {
            Ok(list) => split_methods(list),
            Err(e) if ssh2_kind(&e) == ErrorKind::Auth => return Ok(Offered::Refused),
            Err(e) => return Err(self.auth_stage_error(e, local)),
        };
        if ssh.authenticated() {
            return Ok(Offered::In(method));
        }
        if now.as_slice() == allowed {
            Ok(Offered::Refused)
        } else {
            Ok(Offered::Partial(method, now))
        }
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

/// What became of one authentication step.
enum Offered {
    /// We are in.
    In(AuthMethod),
    /// Accepted as one factor (partial success); the server now allows
    /// these methods for the next.
    Partial(AuthMethod, Vec<String>),
    /// Refused, or not offered by the server.
    Refused,
}

/// The agent identity tried last, as an [`AuthMethod`] (for a partial
/// success by an agent key).
fn agent_method(tried: &[String]) -> AuthMethod {
    AuthMethod::PublicKey {
        fingerprint: None,
        label: tried
            .last()
            .cloned()
            .unwrap_or_else(|| "ssh-agent".to_string()),
    }
}

/// What the server said in keyboard-interactive rounds: instructions and
/// prompt texts (for errors), and whether it asked for a new password.
#[derive(Debug, Default)]
struct Heard {
    said: Vec<String>,
    expired: bool,
}

impl Heard {
    /// Records a round; true when it asks for a new password (PAM's
    /// "You are required to change your password immediately", "New
    /// password:"): then nothing is answered.
    fn round(&mut self, instructions: &str, prompts: &[Prompt<'_>]) -> bool {
        let texts = std::iter::once(instructions).chain(prompts.iter().map(|p| p.text.as_ref()));
        for text in texts.clone() {
            let text = crate::error::printable(text);
            if !text.is_empty() && !self.said.contains(&text) {
                self.said.push(text);
            }
        }
        let expired = texts.map(str::to_ascii_lowercase).any(|t| {
            t.contains("new password")
                || (t.contains("password") && (t.contains("expired") || t.contains("change")))
        });
        self.expired |= expired;
        expired
    }
}

/// Answers the password to the first round of echo-off prompts; later
/// rounds (a second factor, say) get empty answers, so the password is
/// never sent twice; a round that asks for a new password gets none.
struct PasswordPrompter<'a> {
    password: &'a SecretString,
    rounds: u32,
    heard: Heard,
}

impl KeyboardInteractivePrompt for PasswordPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        if self.heard.round(instructions, prompts) {
            return vec![String::new(); prompts.len()];
        }
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

/// Hands each keyboard-interactive round to the caller's responder,
/// except one that asks for a new password.
struct CallbackPrompter<'a> {
    responder: &'a crate::credential::Responder,
    heard: Heard,
}

impl KeyboardInteractivePrompt for CallbackPrompter<'_> {
    fn prompt<'b>(
        &mut self,
        _username: &str,
        instructions: &str,
        prompts: &[Prompt<'b>],
    ) -> Vec<String> {
        if self.heard.round(instructions, prompts) {
            return vec![String::new(); prompts.len()];
        }
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

/// The server's `SSH_MSG_USERAUTH_BANNER` text (sshd's `Banner`), as
/// libssh2 kept it from the first authentication exchange, without
/// control characters other than line breaks and tabs.
pub(super) fn auth_banner(ssh: &ssh2::Session) -> Option<String> {
    let banner = ssh.userauth_banner().ok().flatten()?;
    let clean: String = banner
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let clean = clean.trim_end().to_string();
    (!clean.trim().is_empty()).then_some(clean)
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
