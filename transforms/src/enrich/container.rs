//! `container_of`: the container runtime, container id and Kubernetes pod
//! uid a process belongs to, read from its cgroup path (the path field of
//! `/proc/<pid>/cgroup`, v1 or v2). Plain string scanning, no regex and no
//! allocation: the id borrows from the path and the pod uid is a fixed-size
//! value, so the enrich transform can call this per process cheaply and
//! cache the owned result per cgroup.
//!
//! Rules (each path component on its own; the *last* component that names a
//! container wins, so docker-in-docker reports the inner container and a
//! sub-cgroup such as podman's `libpod-<id>.scope/container` still counts):
//!
//! | component                          | runtime      |
//! |------------------------------------|--------------|
//! | `docker-<id>.scope`                | `docker`     |
//! | `<id>` under a `docker` component  | `docker`     |
//! | `cri-containerd-<id>.scope`        | `containerd` |
//! | `nerdctl-<id>.scope`               | `containerd` |
//! | `crio-<id>.scope`, `crio-<id>`     | `cri-o`      |
//! | `libpod-<id>.scope`, `libpod-<id>` | `podman`     |
//! | `<id>` under a `kubepods` component| `cri` (Kubernetes with the cgroupfs driver: the path does not name the runtime) |
//! | `<id>` anywhere else               | `unknown` (e.g. containerd's `/<namespace>/<id>`) |
//!
//! where `<id>` is exactly 64 lower-case hex digits (what every runtime
//! writes); anything else is not a container id, so conmon's
//! `crio-conmon-<id>.scope` / `libpod-conmon-<id>.scope` (the monitor runs
//! outside the container) and `docker.service` (the daemon) are `host`.
//!
//! The pod uid comes from a component under (or naming) `kubepods`:
//! `pod<uid>` (cgroupfs driver) or `…kubepods[-<qos>]-pod<uid>.slice`
//! (systemd driver, which writes the uid's dashes as `_`, or as `\x2d` when
//! the name went through systemd-escape; both are turned back into `-`).
//! A uid is a UUID (8-4-4-4-12 hex) or, for static pods, 32 hex digits. A
//! process in a pod's cgroup but in no container (rare) is `host` with the
//! pod uid set.

use std::fmt;

/// Who runs the container a process is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Not in a container.
    Host,
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A Kubernetes container whose runtime the path does not name.
    Cri,
    /// A bare container id outside any known layout.
    Unknown,
}

impl Runtime {
    /// Every runtime, in declaration order.
    pub const ALL: [Runtime; 7] = [
        Runtime::Host,
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Cri,
        Runtime::Unknown,
    ];

    /// Position in [`Runtime::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Output and metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Host => "host",
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Cri => "cri",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A Kubernetes pod uid in its canonical form (dashes, lower case), held
/// inline so parsing never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodUid {
    bytes: [u8; 36],
    len: u8,
}

impl PodUid {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PodUid({})", self.as_str())
    }
}

impl fmt::Display for PodUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cgroup path says about a process's container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Container<'a> {
    pub runtime: Runtime,
    /// The 64-hex container id, borrowed from the path; `None` on the host.
    pub id: Option<&'a str>,
    pub pod_uid: Option<PodUid>,
}

impl Container<'_> {
    /// A process in no container.
    pub const HOST: Container<'static> = Container { runtime: Runtime::Host, id: None, pod_uid: None };

    pub fn is_host(&self) -> bool {
        self.id.is_none()
    }
}

/// Container prefixes of a component, with or without `.scope`.
const PREFIXES: [(&str, Runtime); 5] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("nerdctl-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

/// Parses a cgroup path (see the module header for the rules). Never
/// fails: a path that names no container is the host.
pub fn container_of(cgroup_path: &str) -> Container<'_> {
    let mut found = Container::HOST;
    let mut in_kubepods = false;
    let mut previous = "";
    for component in cgroup_path.trim_end().split('/').filter(|c| !c.is_empty()) {
        let kubepods_here = component.contains("kubepods");
        if in_kubepods || kubepods_here {
            if let Some(uid) = pod_uid_in(component) {
                found.pod_uid = Some(uid);
            }
        }
        if let Some((runtime, id)) = container_in(component, previous, in_kubepods) {
            found.runtime = runtime;
            found.id = Some(id);
        }
        in_kubepods |= kubepods_here;
        previous = component;
    }
    found
}

fn container_in<'a>(component: &'a str, previous: &str, in_kubepods: bool) -> Option<(Runtime, &'a str)> {
    let base = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = base.strip_prefix(prefix) {
            return is_container_id(id).then_some((runtime, id));
        }
    }
    if !is_container_id(component) {
        return None;
    }
    let runtime = if in_kubepods {
        Runtime::Cri
    } else if previous == "docker" {
        Runtime::Docker
    } else {
        Runtime::Unknown
    };
    Some((runtime, component))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// The pod uid a component names, in either driver's form.
fn pod_uid_in(component: &str) -> Option<PodUid> {
    let raw = if let Some(slice) = component.strip_suffix(".slice") {
        // `kubepods-burstable-pod<uid>.slice`, `kubelet-kubepods-pod<uid>.slice`
        let at = slice.rfind("-pod")?;
        &slice[at + "-pod".len()..]
    } else {
        component.strip_prefix("pod")?
    };
    parse_uid(raw)
}

/// Canonicalises `_` and `\x2d` to `-`, then accepts a UUID or 32 hex digits.
fn parse_uid(raw: &str) -> Option<PodUid> {
    let mut uid = PodUid { bytes: [0; 36], len: 0 };
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let (b, step) = match bytes[i] {
            b'_' => (b'-', 1),
            b'\\' if bytes[i..].starts_with(b"\\x2d") => (b'-', 4),
            b => (b, 1),
        };
        let slot = uid.bytes.get_mut(usize::from(uid.len))?;
        *slot = b;
        uid.len += 1;
        i += step;
    }
    let s = &uid.bytes[..usize::from(uid.len)];
    let uuid = s.len() == 36
        && s.iter().enumerate().all(|(i, &b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { is_lower_hex(b) });
    let static_pod = s.len() == 32 && s.iter().all(|&b| is_lower_hex(b));
    (uuid || static_pod).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8a1b2c3d-4e5f-6789-abcd-ef0123456789";
    const UID_: &str = "8a1b2c3d_4e5f_6789_abcd_ef0123456789";
    const UID_ESC: &str = r"8a1b2c3d\x2d4e5f\x2d6789\x2dabcd\x2def0123456789";
    const STATIC_UID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// (path, runtime, id, pod uid)
    fn cases() -> Vec<(String, Runtime, Option<&'static str>, Option<&'static str>)> {
        use Runtime::*;
        vec![
            // docker: cgroupfs driver (v1 and v2), systemd driver, nested, dind.
            (format!("/docker/{ID}"), Docker, Some(ID), None),
            (format!("/system.slice/docker-{ID}.scope"), Docker, Some(ID), None),
            (format!("/system.slice/docker-{ID}.scope/init.scope"), Docker, Some(ID), None),
            (format!("/docker/{ID}/docker/{ID2}"), Docker, Some(ID2), None),
            (format!("/user.slice/user-1000.slice/user@1000.service/docker-{ID}.scope"), Docker, Some(ID), None),
            // containerd under Kubernetes, systemd driver, every QoS class.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Some(ID),
                Some(UID),
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Some(ID),
                Some(UID),
            ),
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"), Containerd, Some(ID), Some(UID)),
            // kind / kubelet-rooted hierarchies.
            (
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Some(ID),
                Some(UID),
            ),
            // systemd-escaped dashes, and a static pod's hash uid.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESC}.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Some(ID),
                Some(UID),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{ID}.scope"),
                Containerd,
                Some(ID),
                Some(STATIC_UID),
            ),
            // cgroupfs driver: the path does not say which CRI runtime.
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), Cri, Some(ID), Some(UID)),
            (format!("/kubepods/burstable/pod{UID}/{ID}"), Cri, Some(ID), Some(UID)),
            (format!("/kubepods/pod{UID}/{ID}"), Cri, Some(ID), Some(UID)),
            // CRI-O, and its conmon (outside the container, inside the pod).
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"),
                CriO,
                Some(ID),
                Some(UID),
            ),
            (format!("/kubepods/burstable/pod{UID}/crio-{ID}"), CriO, Some(ID), Some(UID)),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope"),
                Host,
                None,
                Some(UID),
            ),
            // dockershim with the systemd driver.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope"),
                Docker,
                Some(ID),
                Some(UID),
            ),
            // podman: rootful, rootful with the `container` sub-cgroup, rootless, cgroupfs.
            (format!("/machine.slice/libpod-{ID}.scope"), Podman, Some(ID), None),
            (format!("/machine.slice/libpod-{ID}.scope/container"), Podman, Some(ID), None),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                Podman,
                Some(ID),
                None,
            ),
            (format!("/libpod_parent/libpod-{ID}"), Podman, Some(ID), None),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), Host, None, None),
            // containerd without Kubernetes.
            (format!("/system.slice/nerdctl-{ID}.scope"), Containerd, Some(ID), None),
            (format!("/default/{ID}"), Unknown, Some(ID), None),
            (format!("/docker/{ID}\n"), Docker, Some(ID), None),
        ]
    }

    #[test]
    fn runtimes_ids_and_pod_uids_from_real_looking_paths() {
        for (path, runtime, id, pod) in cases() {
            let got = container_of(&path);
            assert_eq!(got.runtime, runtime, "{path}");
            assert_eq!(got.id, id, "{path}");
            assert_eq!(got.pod_uid.as_ref().map(PodUid::as_str), pod, "{path}");
            assert_eq!(got.is_host(), id.is_none(), "{path}");
        }
    }

    #[test]
    fn host_and_lookalikes_are_host() {
        let short = &ID[..63];
        let upper = ID.to_uppercase();
        let not_hex = format!("{}g", &ID[..63]);
        let paths = [
            String::new(),
            "/".to_owned(),
            "/user.slice/user-1000.slice/session-3.scope".to_owned(),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service".to_owned(),
            "/system.slice/docker.service".to_owned(),
            "/system.slice/containerd.service".to_owned(),
            "/system.slice/crio.service".to_owned(),
            "/init.scope".to_owned(),
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}0.scope"),
            format!("/system.slice/docker-{upper}.scope"),
            format!("/system.slice/docker-{not_hex}.scope"),
            format!("/docker/{short}"),
            "/kubepods.slice/kubepods-burstable.slice".to_owned(),
        ];
        for path in paths {
            assert_eq!(container_of(&path), Container::HOST, "{path:?}");
        }
    }

    #[test]
    fn pod_uids_need_kubepods_and_a_valid_shape() {
        // A pod-looking component outside kubepods is not a pod.
        assert_eq!(container_of(&format!("/user.slice/pod{UID}/x.scope")).pod_uid, None);
        // Malformed uids: the container still counts, the pod uid does not.
        for bad in ["not-a-uid", "8a1b2c3d-4e5f-6789-abcd-ef012345678", "8A1B2C3D-4E5F-6789-ABCD-EF0123456789"] {
            let path = format!("/kubepods/besteffort/pod{bad}/{ID}");
            let got = container_of(&path);
            assert_eq!((got.runtime, got.id, got.pod_uid), (Runtime::Cri, Some(ID), None), "{bad}");
        }
        let too_long = format!("/kubepods.slice/kubepods-pod{UID_}_0000.slice/cri-containerd-{ID}.scope");
        assert_eq!(container_of(&too_long).pod_uid, None);
        // A pod-level process (no container scope) keeps the pod uid.
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        let pod_only = container_of(&path);
        assert_eq!((pod_only.runtime, pod_only.id), (Runtime::Host, None));
        assert_eq!(pod_only.pod_uid.map(|u| u.to_string()), Some(UID.to_owned()));
    }

    #[test]
    fn labels() {
        let labels: Vec<_> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
        for runtime in Runtime::ALL {
            assert_eq!(Runtime::ALL[runtime.index()], runtime);
        }
        assert_eq!(labels, ["host", "docker", "containerd", "cri-o", "podman", "cri", "unknown"]);
    }
}
