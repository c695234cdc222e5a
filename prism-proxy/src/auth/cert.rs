//! The subject common name (CN) of an X.509 certificate, read with a small
//! DER walker: the certificate was already verified by rustls during the
//! handshake, so only the subject needs to be found.

/// One DER element: (tag, contents, rest of the input).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The first CN in the subject of the DER certificate `der`.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // version [0] (optional), serialNumber, signature, issuer, validity,
    // subject.
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        let (_, _, after) = element(rest)?;
        rest = after;
    }
    let (tag, mut name, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    while !name.is_empty() {
        let (tag, mut rdn, after) = element(name)?;
        name = after;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (_, attribute, after) = element(rdn)?;
            rdn = after;
            let (tag, oid, value) = element(attribute)?;
            if tag == OID && oid == COMMON_NAME {
                let (tag, text, _) = element(value)?;
                // UTF8String, PrintableString, TeletexString, IA5String.
                return match tag {
                    0x0c | 0x13 | 0x14 | 0x16 => {
                        Some(String::from_utf8_lossy(text).into_owned()).filter(|s| !s.is_empty())
                    }
                    _ => None,
                };
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Prism tests");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn finds_the_subject_common_name() {
        assert_eq!(
            common_name(&cert(Some("svc-orders"))).as_deref(),
            Some("svc-orders")
        );
    }

    #[test]
    fn no_common_name_or_garbage_gives_none() {
        assert_eq!(common_name(&cert(None)), None);
        assert_eq!(common_name(b"\x30\x05abc"), None);
        assert_eq!(common_name(&[]), None);
    }
}
