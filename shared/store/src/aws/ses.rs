//! Mail through Amazon SES v2 (`SendEmail` with the raw message).

use crate::StoreError;
use crate::outbox::MailSender;
use async_trait::async_trait;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};

pub struct SesSender {
    pub client: aws_sdk_sesv2::Client,
}

#[async_trait]
impl MailSender for SesSender {
    async fn send_raw(&self, from: &str, to: &[String], raw: &[u8]) -> Result<(), StoreError> {
        let message = RawMessage::builder()
            .data(Blob::new(raw.to_vec()))
            .build()
            .map_err(|e| StoreError::Invalid(format!("SES raw message: {e}")))?;
        self.client
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().set_to_addresses(Some(to.to_vec())).build())
            .content(EmailContent::builder().raw(message).build())
            .send()
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "SES SendEmail: {}",
                    aws_sdk_sesv2::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}
