//! Outgoing email (G15 invitations): through SMTP when `[smtp]` is configured, otherwise into
//! `DATA_DIR/outbox/` as `.eml` files, so a server without mail still keeps what it would send.

use crate::config::SmtpConfig;
use crate::error::{ApiError, ApiResult};
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

/// Where mail goes.
pub enum Mailer {
    /// Plain SMTP to a relay (on the same host or a trusted network).
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: String,
    },
    /// `.eml` files in a folder.
    Outbox { dir: PathBuf, from: String },
}

/// Longest accepted address (RFC 5321).
const MAX_ADDRESS: usize = 254;

impl Mailer {
    pub fn new(smtp: Option<&SmtpConfig>, data_dir: &std::path::Path) -> Mailer {
        match smtp {
            Some(c) => Mailer::Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
                    .port(c.port)
                    .build(),
                from: c.from.clone(),
            },
            None => Mailer::Outbox {
                dir: data_dir.join("outbox"),
                from: "crossroom <noreply@crossroom.invalid>".into(),
            },
        }
    }

    /// Check an address before anything is sent.
    pub fn check_address(to: &str) -> ApiResult<()> {
        let ok = to.len() <= MAX_ADDRESS && to.parse::<lettre::Address>().is_ok();
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid(format!("{to:?} is not an email address")))
        }
    }

    /// Send one plain-text email.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> ApiResult<()> {
        let from = match self {
            Mailer::Smtp { from, .. } | Mailer::Outbox { from, .. } => from,
        };
        let message = Message::builder()
            .from(from.parse().map_err(|_| ApiError::internal())?)
            .to(to
                .parse()
                .map_err(|_| ApiError::invalid(format!("{to:?} is not an email address")))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| ApiError::invalid(format!("cannot build the email: {e}")))?;
        match self {
            Mailer::Smtp { transport, .. } => {
                transport.send(message).await.map_err(|e| {
                    tracing::warn!(error = %e, "smtp send failed");
                    ApiError::new(
                        crossroom_protocol::ErrorCode::Unavailable,
                        "the mail server did not accept the message; try again later",
                    )
                })?;
            }
            Mailer::Outbox { dir, .. } => {
                let io = |e: std::io::Error| {
                    tracing::error!(error = %e, "cannot write to the outbox");
                    ApiError::internal()
                };
                tokio::fs::create_dir_all(dir).await.map_err(io)?;
                let name = format!("{}-{}.eml", crate::clock::now_ms(), crate::random::token());
                tokio::fs::write(dir.join(name), message.formatted())
                    .await
                    .map_err(io)?;
            }
        }
        Ok(())
    }
}
