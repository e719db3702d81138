//! Validation of objects before they are stored (Kubernetes' `validation`
//! packages, for the fields Skiff supports).
//!
//! CONTRACT (shared by the request path and the schema code): validation
//! returns every [`FieldError`] found; the HTTP boundary turns them into one
//! 422 `Invalid` Status whose `details.causes` name each field.

/// What is wrong with a field (Kubernetes' `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is missing ("Required value").
    Required,
    /// The value is not valid ("Invalid value").
    Invalid,
    /// The value is not one of the allowed ones ("Unsupported value").
    NotSupported,
    /// The value is given twice ("Duplicate value").
    Duplicate,
    /// The field may not be set or changed ("Forbidden").
    Forbidden,
    /// The value is too long ("Too long").
    TooLong,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` for this kind, e.g. `FieldValueRequired`.
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
        }
    }

    /// The words Kubernetes prints for this kind, e.g. `Required value`.
    pub fn words(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
        }
    }
}

/// One invalid field (Kubernetes' `field.Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The offending value, rendered as Kubernetes does (quoted strings), if any.
    pub value: Option<String>,
    /// Extra words, e.g. `must be no more than 63 characters`.
    pub detail: String,
}

impl FieldError {
    /// A missing required field.
    pub fn required(field: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Required, value: None, detail: String::new() }
    }

    /// An invalid value.
    pub fn invalid(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// The message Kubernetes prints, e.g.
    /// `spec.containers: Required value` or
    /// `metadata.name: Invalid value: "A": a lowercase RFC 1123 subdomain must …`.
    pub fn message(&self) -> String {
        let mut m = format!("{}: {}", self.field, self.kind.words());
        if let Some(v) = &self.value {
            m.push_str(": ");
            m.push_str(v);
        }
        if !self.detail.is_empty() {
            m.push_str(": ");
            m.push_str(&self.detail);
        }
        m
    }
}
