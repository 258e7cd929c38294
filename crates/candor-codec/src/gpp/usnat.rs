//! Field table for GPP section 7, `usnat` (US National Privacy).
//!
//! Version 2 widened SensitiveDataProcessing from 12 to 16 items and
//! KnownChildSensitiveDataConsents from 2 to 3; both layouts are kept so
//! version-1 strings still decode.

use super::section::{int2, list2, FieldSpec, UsSectionSpec, VersionLayout};

const V1: &[FieldSpec] = &[
    int2("SharingNotice"),
    int2("SaleOptOutNotice"),
    int2("SharingOptOutNotice"),
    int2("TargetedAdvertisingOptOutNotice"),
    int2("SensitiveDataProcessingOptOutNotice"),
    int2("SensitiveDataLimitUseNotice"),
    int2("SaleOptOut"),
    int2("SharingOptOut"),
    int2("TargetedAdvertisingOptOut"),
    list2("SensitiveDataProcessing", 12),
    list2("KnownChildSensitiveDataConsents", 2),
    int2("PersonalDataConsents"),
    int2("MspaCoveredTransaction"),
    int2("MspaOptOutOptionMode"),
    int2("MspaServiceProviderMode"),
];

const V2: &[FieldSpec] = &[
    int2("SharingNotice"),
    int2("SaleOptOutNotice"),
    int2("SharingOptOutNotice"),
    int2("TargetedAdvertisingOptOutNotice"),
    int2("SensitiveDataProcessingOptOutNotice"),
    int2("SensitiveDataLimitUseNotice"),
    int2("SaleOptOut"),
    int2("SharingOptOut"),
    int2("TargetedAdvertisingOptOut"),
    list2("SensitiveDataProcessing", 16),
    list2("KnownChildSensitiveDataConsents", 3),
    int2("PersonalDataConsents"),
    int2("MspaCoveredTransaction"),
    int2("MspaOptOutOptionMode"),
    int2("MspaServiceProviderMode"),
];

/// The `usnat` section.
pub static USNAT: UsSectionSpec = UsSectionSpec {
    id: 7,
    name: "usnat",
    layouts: &[
        VersionLayout {
            version: 1,
            fields: V1,
        },
        VersionLayout {
            version: 2,
            fields: V2,
        },
    ],
    has_gpc: true,
};
