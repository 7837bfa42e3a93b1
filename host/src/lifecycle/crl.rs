//! CRLs for issuer instances whose CA key is in the host keystore (the local CA, self-signed
//! or imported). The host signs them itself: the CA certificate is the one above the leaves
//! the instance issued, and its key is the instance's keystore key with the same public key.
//! Regenerated on every revocation and by the scheduler before `nextUpdate`.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::*;

use super::Lifecycle;
use crate::model::{RevocationReason, Timestamp};
use crate::store::lifecycle::StoredCrl;

/// How long a CRL is valid; the scheduler regenerates it a day before it runs out.
pub const CRL_VALIDITY_SECS: i64 = 7 * 86_400;
/// Regenerate this long before `nextUpdate`.
pub const CRL_REFRESH_MARGIN_SECS: i64 = 86_400;

fn reason(r: RevocationReason) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match r {
        RevocationReason::Unspecified => R::Unspecified,
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::CaCompromise => R::CaCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::CertificateHold => R::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => R::AaCompromise,
    }
}

fn datetime(t: Timestamp) -> Result<::time::OffsetDateTime, String> {
    ::time::OffsetDateTime::from_unix_timestamp(t.0).map_err(|e| e.to_string())
}

/// Builds, signs and stores a new CRL for `issuer_id`. Errors say why none can be made.
pub async fn regenerate(lc: &Lifecycle, issuer_id: &str) -> Result<StoredCrl, String> {
    let chain = lc
        .store
        .latest_chain_of_issuer(issuer_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the issuer has issued nothing yet, so its CA is unknown".to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("stored chain: {e}"))?;
    let ca_der = certs
        .get(1)
        .ok_or_else(|| "the issuer's chains do not include its CA certificate".to_string())?;
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| format!("CA certificate: {e}"))?;
    let ca_spki = ca.public_key().raw.to_vec();
    let owner = format!("instance:{issuer_id}");
    let key_id = lc
        .store
        .keys_of_owner(&owner)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(_, spki)| *spki == ca_spki)
        .map(|(id, _)| id)
        .ok_or_else(|| "the CA key is not in the host keystore (an external CA publishes its own CRL)".to_string())?;
    let ski = ca.iter_extensions().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    let (_, pair) = lc.keystore.key_pair(&key_id).await.map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::from_ca_cert_der(ca_der, pair).map_err(|e| format!("CA certificate: {e}"))?;

    let previous = lc.store.get_crl(issuer_id).await.map_err(|e| e.to_string())?;
    let number = previous.map_or(1, |c| c.number + 1);
    let now = lc.clock.now();
    let revoked = lc.store.revoked_serials(issuer_id).await.map_err(|e| e.to_string())?;
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for r in &revoked {
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(hex::decode(&r.serial).map_err(|e| format!("serial: {e}"))?),
            revocation_time: datetime(r.revoked_at)?,
            reason_code: Some(reason(r.reason)),
            invalidity_date: None,
        });
    }
    let next_update = Timestamp(now.0 + CRL_VALIDITY_SECS);
    let params = rcgen::CertificateRevocationListParams {
        this_update: datetime(now)?,
        next_update: datetime(next_update)?,
        crl_number: rcgen::SerialNumber::from(
            number
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect::<Vec<u8>>(),
        ),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: match ski {
            Some(ski) => rcgen::KeyIdMethod::PreSpecified(ski),
            None => rcgen::KeyIdMethod::Sha256,
        },
    };
    let crl = params.signed_by(&issuer).map_err(|e| format!("signing the CRL: {e}"))?;
    let stored = StoredCrl {
        number,
        this_update: now,
        next_update,
        der: crl.der().to_vec(),
    };
    lc.store.put_crl(issuer_id, &stored).await.map_err(|e| e.to_string())?;
    tracing::info!(issuer = %issuer_id, number, revoked = revoked.len(), "CRL regenerated");
    Ok(stored)
}
