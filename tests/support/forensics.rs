//! Reading a forensics bundle in a test: every file by its path inside the
//! bundle's top directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The bundle's files (path below the top directory → text); the bundle
/// must be one top directory of regular files.
pub fn bundle_files(path: &Path) -> BTreeMap<String, String> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut files = BTreeMap::new();
    let mut top: Option<String> = None;
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("an entry");
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let (dir, rest) = name.split_once('/').expect("below a top directory");
        assert_eq!(
            top.get_or_insert_with(|| dir.to_string()),
            dir,
            "one top directory"
        );
        let mut text = Vec::new();
        entry.read_to_end(&mut text).unwrap();
        files.insert(
            rest.to_string(),
            String::from_utf8_lossy(&text).into_owned(),
        );
    }
    files
}

/// The bundle path a failed run printed (`forensics: PATH (…)`).
pub fn printed_bundle(stderr: &[u8]) -> std::path::PathBuf {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("forensics: "))
        .unwrap_or_else(|| panic!("no forensics line in: {text}"));
    std::path::PathBuf::from(line.split(" (").next().unwrap())
}
