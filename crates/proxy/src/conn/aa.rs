//! The AA plugin on the SSH proxy (R-SES-4): consulted after the connection policy, before the
//! request check; its questions asked through keyboard-interactive, its verdict (and mapping)
//! applied, all audited.

use portcullis_core::inventory::Protocol;
use russh::server::Auth;

use crate::aa::{Conversation, Step};

use super::*;

/// A conversation whose questions are being asked.
pub(super) struct AaPending {
    conversation: Conversation,
    account: String,
    asset: String,
    /// A launch token's access (the account is fixed).
    fixed: Option<Access>,
}

impl Conn {
    /// Calls the plugin the first time. `None`: it asked questions.
    pub(super) async fn aa_begin(
        &mut self,
        user: &User,
        mut conversation: Conversation,
        account: &str,
        asset: &str,
        fixed: Option<Access>,
    ) -> Option<Result<Access, String>> {
        let source = self.source();
        let step = {
            let policy = self.gateway.as_ref()?;
            let facts = crate::pipeline::aa_facts(Protocol::Ssh, user, &source, account, asset, policy);
            conversation.start(&self.plugins, &facts).await
        };
        let pending = AaPending { conversation, account: account.into(), asset: asset.into(), fixed };
        self.aa_step(user, pending, step).await
    }

    /// Applies a plugin's step: questions pending (`None`), or the access (or refusal).
    async fn aa_step(
        &mut self,
        user: &User,
        pending: AaPending,
        step: Result<Step, String>,
    ) -> Option<Result<Access, String>> {
        let actor = Actor { id: user.id.clone(), name: user.username.clone(), source: self.source() };
        let target = format!("{}@{}", pending.account, pending.asset);
        let result = match step {
            Ok(Step::Ask(_)) => {
                self.aa = Some(pending);
                return None;
            }
            Err(why) => Err(why),
            Ok(Step::Allowed { account: mapped }) => match (pending.fixed.clone(), mapped) {
                (Some(_), Some(m)) => Err(format!(
                    "the AA plugin mapped the connection to account '{m}', but a launch token's account cannot change; connect as USER#ACCOUNT@ASSET instead"
                )),
                (Some(access), None) => Ok(access),
                (None, mapped) => {
                    let policy = self.gateway.as_ref()?;
                    match crate::pipeline::mapped_account(policy, &pending.account, mapped) {
                        Ok(account) => self.request_check(user, &account, &pending.asset, None).await,
                        Err(why) => Err(why),
                    }
                }
            },
        };
        let refused = result.as_ref().err().map(String::as_str);
        crate::pipeline::audit_aa(&self.state, &actor, &user.id, &pending.conversation, &target, refused).await;
        Some(result.map(|mut a| {
            a.aa = Some(pending.conversation.record());
            a
        }))
    }

    /// The plugin's questions as keyboard-interactive prompts.
    pub(super) fn aa_prompts(&self) -> Auth {
        let Some(p) = &self.aa else { return reject() };
        let prompts: Vec<_> =
            p.conversation.questions().iter().map(|q| (std::borrow::Cow::Owned(q.prompt.clone()), q.echo)).collect();
        let name = format!("Portcullis ({})", p.conversation.plugin);
        Auth::Partial { name: name.into(), instructions: "".into(), prompts: prompts.into() }
    }

    /// Keyboard-interactive while the plugin's questions are pending: the prompts, or the
    /// answers for the plugin's next call.
    pub(super) async fn aa_answer(&mut self, response: Option<russh::server::Response<'_>>) -> Auth {
        let Some(response) = response else { return self.aa_prompts() };
        let (Some(mut pending), Some(user)) = (self.aa.take(), self.user.clone()) else { return reject() };
        let answers: Vec<String> = response.map(|b| String::from_utf8_lossy(&b).into_owned()).collect();
        let source = self.source();
        let step = match self.gateway.as_ref() {
            Some(policy) => {
                let facts =
                    crate::pipeline::aa_facts(Protocol::Ssh, &user, &source, &pending.account, &pending.asset, policy);
                pending.conversation.answer(&self.plugins, &facts, answers).await
            }
            None => Err("no connection policy admitted this connection".into()),
        };
        match self.aa_step(&user, pending, step).await {
            None => self.aa_prompts(),
            Some(Err(why)) => {
                // Accepted, then refused with the reason as the message the client prints.
                self.access = Some(Err(why));
                Auth::Accept
            }
            Some(Ok(access)) => {
                self.access = Some(Ok(access));
                match self.signed_in() {
                    // Same conversation: the target's password or the wait's notice next.
                    Auth::Reject { partial_success: true, .. } if self.want_target_secret => self.target_prompt(),
                    Auth::Reject { partial_success: true, .. } if self.must_wait() => self.wait_step(false).await,
                    other => other,
                }
            }
        }
    }
}
