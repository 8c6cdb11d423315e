//! Contact and company listings (for the CLI and the tests; the API pages them later).

use crate::keys::{COMPANIES_INDEX_PK, CONTACTS_INDEX_PK};
use crate::runtime::ports::Ports;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    pub email: String,
    pub name: Option<String>,
    pub company_domain: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompanyView {
    pub domain: String,
    pub name: String,
    /// Number of contacts at the company.
    pub contacts: u64,
}

use crate::keys::item_str as s;

pub async fn contacts(ports: &Ports) -> anyhow::Result<Vec<ContactView>> {
    Ok(list_index(ports, CONTACTS_INDEX_PK)
        .await?
        .iter()
        .map(|c| ContactView {
            email: s(c, "email").unwrap_or_default(),
            name: s(c, "name"),
            company_domain: s(c, "company_domain"),
        })
        .collect())
}

pub async fn companies(ports: &Ports) -> anyhow::Result<Vec<CompanyView>> {
    let mut per_domain: BTreeMap<String, u64> = BTreeMap::new();
    for c in contacts(ports).await? {
        if let Some(d) = c.company_domain {
            *per_domain.entry(d).or_default() += 1;
        }
    }
    Ok(list_index(ports, COMPANIES_INDEX_PK)
        .await?
        .iter()
        .map(|c| {
            let domain = s(c, "domain").unwrap_or_default();
            CompanyView {
                contacts: per_domain.get(&domain).copied().unwrap_or(0),
                name: s(c, "name").unwrap_or_else(|| domain.clone()),
                domain,
            }
        })
        .collect())
}

/// Lists contacts or companies (for the CLI and tests).
pub async fn list_index(ports: &Ports, pk: &str) -> anyhow::Result<Vec<mailroom_store::Item>> {
    use mailroom_store::{Query, SkCond};
    Ok(ports.table.query_all(Query::new(pk).index("gsi1").sk(SkCond::All)).await?)
}
