//! NVML, the NVIDIA Management Library, behind a trait.
//!
//! [`NvmlLibrary`] loads `libnvidia-ml.so.1` at run time with `dlopen`; kedge
//! has no link-time dependency on it, so the same binary runs on hosts
//! without NVIDIA's driver (and on static musl builds, where `dlopen` fails
//! and discovery falls back to `/proc/driver/nvidia`). [`FakeNvml`] stands in
//! for it in tests and CI, which have no GPU.
//!
//! The library is initialised once and never shut down or unloaded: device
//! and event-set handles stay valid for the life of the process.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr, CString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `nvmlEventTypeSingleBitEccError`.
pub const EVENT_TYPE_SINGLE_BIT_ECC: u64 = 0x1;
/// `nvmlEventTypeDoubleBitEccError`.
pub const EVENT_TYPE_DOUBLE_BIT_ECC: u64 = 0x2;
/// `nvmlEventTypeXidCriticalError`: `data` is the XID.
pub const EVENT_TYPE_XID_CRITICAL_ERROR: u64 = 0x8;

/// `NVML_ERROR_NOT_SUPPORTED`.
pub const ERROR_NOT_SUPPORTED: i32 = 3;
/// `NVML_ERROR_TIMEOUT`.
pub const ERROR_TIMEOUT: i32 = 10;
/// `NVML_ERROR_GPU_IS_LOST`.
pub const ERROR_GPU_IS_LOST: i32 = 15;

/// The soname NVIDIA's driver installs.
pub const LIBRARY_NAME: &str = "libnvidia-ml.so.1";

/// Errors of NVML or of loading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvmlError {
    #[error("cannot load {library}: {message}")]
    Load { library: String, message: String },
    #[error("{library} has no symbol {symbol} (driver too old?)")]
    MissingSymbol {
        library: String,
        symbol: &'static str,
    },
    #[error("{function} failed: {message} (NVML error {code})")]
    Call {
        function: &'static str,
        code: i32,
        message: String,
    },
    #[error("invalid GPU UUID {0:?}")]
    InvalidUuid(String),
}

impl NvmlError {
    /// The `nvmlReturn_t` of a failed call.
    pub fn code(&self) -> Option<i32> {
        match self {
            NvmlError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// `NVML_ERROR_NOT_SUPPORTED`: the GPU cannot do this (e.g. events on
    /// old boards), which says nothing about its health.
    pub fn is_not_supported(&self) -> bool {
        self.code() == Some(ERROR_NOT_SUPPORTED)
    }
}

/// One GPU as NVML describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlDevice {
    pub index: u32,
    /// `GPU-xxxxxxxx-xxxx-...`.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// N of `/dev/nvidiaN`.
    pub minor: Option<u32>,
    pub memory_total_bytes: Option<u64>,
    /// `00000000:3B:00.0`.
    pub pci_bus_id: Option<String>,
}

/// One NVML event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlEvent {
    /// The GPU it happened on; `None` when NVML could not say.
    pub uuid: Option<String>,
    /// One of the `EVENT_TYPE_*` bits.
    pub event_type: u64,
    /// The XID for [`EVENT_TYPE_XID_CRITICAL_ERROR`], else 0.
    pub data: u64,
}

/// A registered NVML event set.
pub trait NvmlEventSource: Send {
    /// Blocks up to `timeout` for the next event; `Ok(None)` on timeout.
    fn wait(&mut self, timeout: Duration) -> Result<Option<NvmlEvent>, NvmlError>;
}

/// An event set and the GPUs that could not be registered in it.
pub struct NvmlEventRegistration {
    pub source: Box<dyn NvmlEventSource>,
    /// GPUs whose events are not watched, with why.
    pub unregistered: Vec<(String, NvmlError)>,
}

/// What kedge needs from NVML.
pub trait Nvml: Send + Sync + 'static {
    /// The kernel driver version, e.g. `550.54.15`.
    fn driver_version(&self) -> Result<String, NvmlError>;
    /// Every GPU, in NVML index order.
    fn devices(&self) -> Result<Vec<NvmlDevice>, NvmlError>;
    /// Whether the GPU still answers (a handle and its memory info); a GPU
    /// that fell off the bus (XID 79) fails with `NVML_ERROR_GPU_IS_LOST`
    /// until it is reset.
    fn probe(&self, uuid: &str) -> Result<(), NvmlError>;
    /// Registers XID critical errors (and ECC events, which the NVIDIA plugin
    /// skips as upstream does) of these GPUs in one event set.
    fn watch_events(&self, uuids: &[String]) -> Result<NvmlEventRegistration, NvmlError>;
}

// ---------------------------------------------------------------------------
// The real library.

type Return = c_int;
type DeviceHandle = *mut c_void;
type EventSetHandle = *mut c_void;

const SUCCESS: Return = 0;
const UUID_BUFFER: usize = 96; // NVML_DEVICE_UUID_V2_BUFFER_SIZE
const NAME_BUFFER: usize = 96; // NVML_DEVICE_NAME_V2_BUFFER_SIZE
const DRIVER_VERSION_BUFFER: usize = 80; // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Default)]
struct RawMemory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlPciInfo_t` (68 bytes, `busId` at offset 36).
#[repr(C)]
struct RawPciInfo {
    bus_id_legacy: [u8; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [u8; 32],
}

/// `nvmlEventData_t` as `nvmlEventSetWait_v2` fills it (32 bytes); the v1
/// call fills only the first 24, a prefix of this layout.
#[repr(C)]
struct RawEventData {
    device: DeviceHandle,
    event_type: c_ulonglong,
    event_data: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

const _: () = assert!(std::mem::size_of::<RawMemory>() == 24);
const _: () = assert!(std::mem::size_of::<RawPciInfo>() == 68);
const _: () = assert!(std::mem::offset_of!(RawPciInfo, bus_id) == 36);
const _: () = assert!(std::mem::offset_of!(RawEventData, event_data) == 16);

// The C signatures of the NVML entry points kedge calls, from nvml.h.
type FnInit = unsafe extern "C" fn() -> Return;
type FnErrorString = unsafe extern "C" fn(Return) -> *const c_char;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> Return;
type FnHandleByIndex = unsafe extern "C" fn(c_uint, *mut DeviceHandle) -> Return;
type FnHandleByUuid = unsafe extern "C" fn(*const c_char, *mut DeviceHandle) -> Return;
type FnDeviceString = unsafe extern "C" fn(DeviceHandle, *mut c_char, c_uint) -> Return;
type FnDeviceUint = unsafe extern "C" fn(DeviceHandle, *mut c_uint) -> Return;
type FnMemoryInfo = unsafe extern "C" fn(DeviceHandle, *mut RawMemory) -> Return;
type FnPciInfo = unsafe extern "C" fn(DeviceHandle, *mut RawPciInfo) -> Return;
type FnSystemString = unsafe extern "C" fn(*mut c_char, c_uint) -> Return;
type FnEventSetCreate = unsafe extern "C" fn(*mut EventSetHandle) -> Return;
type FnSupportedEvents = unsafe extern "C" fn(DeviceHandle, *mut c_ulonglong) -> Return;
type FnRegisterEvents = unsafe extern "C" fn(DeviceHandle, c_ulonglong, EventSetHandle) -> Return;
type FnEventSetWait = unsafe extern "C" fn(EventSetHandle, *mut RawEventData, c_uint) -> Return;
type FnEventSetFree = unsafe extern "C" fn(EventSetHandle) -> Return;

/// The NVML entry points kedge calls.
struct Api {
    error_string: FnErrorString,
    device_get_count: FnCount,
    device_get_handle_by_index: FnHandleByIndex,
    device_get_handle_by_uuid: FnHandleByUuid,
    device_get_uuid: FnDeviceString,
    device_get_name: FnDeviceString,
    device_get_minor_number: FnDeviceUint,
    device_get_memory_info: FnMemoryInfo,
    device_get_pci_info: FnPciInfo,
    system_get_driver_version: FnSystemString,
    event_set_create: FnEventSetCreate,
    device_get_supported_event_types: FnSupportedEvents,
    device_register_events: FnRegisterEvents,
    event_set_wait: FnEventSetWait,
    event_set_free: FnEventSetFree,
}

/// NVML loaded with `dlopen`.
pub struct NvmlLibrary {
    api: Arc<Api>,
}

impl std::fmt::Debug for NvmlLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmlLibrary")
    }
}

/// The text of `dlerror()`, or a fallback.
fn dl_error() -> String {
    // SAFETY: dlerror takes no arguments and returns either NULL or a pointer
    // to a NUL-terminated string owned by libc, valid until the next dl* call
    // on this thread; we copy it out before making any other call.
    unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "unknown dlopen error".to_string()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    }
}

/// The text of a NUL-terminated string in a buffer NVML filled.
fn buffer_text(buffer: &[u8]) -> String {
    match CStr::from_bytes_until_nul(buffer) {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(buffer).into_owned(),
    }
}

impl NvmlLibrary {
    /// Loads `libnvidia-ml.so.1` and calls `nvmlInit_v2`.
    pub fn load() -> Result<Self, NvmlError> {
        let library = LIBRARY_NAME.to_string();
        // SAFETY: the name is a NUL-terminated literal; dlopen has no other
        // preconditions. Loading runs the library's initialisers, which is
        // what NVIDIA supports for every NVML client.
        let handle = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            return Err(NvmlError::Load {
                library,
                message: dl_error(),
            });
        }

        /// Looks a symbol up and types it as the field it initialises.
        macro_rules! symbol {
            ($name:literal, $ty:ty) => {{
                // SAFETY: `handle` is a live handle from dlopen (never
                // closed) and the name a NUL-terminated literal.
                let pointer = unsafe { libc::dlsym(handle, $name.as_ptr()) };
                if pointer.is_null() {
                    return Err(NvmlError::MissingSymbol {
                        library,
                        symbol: $name.to_str().unwrap_or("?"),
                    });
                }
                // SAFETY: a non-null symbol of NVML with this name is the
                // function nvml.h declares, whose C signature the `Api` field
                // spells out; a data pointer and a function pointer have the
                // same size and representation on every platform dlsym exists
                // on (POSIX requires it).
                unsafe { std::mem::transmute::<*mut c_void, $ty>(pointer) }
            }};
        }

        // nvmlEventSetWait_v2 (R450+) also reports MIG instance IDs; the v1
        // call fills a prefix of the same struct.
        let event_set_wait = {
            // SAFETY: as in `symbol!`.
            let v2 = unsafe { libc::dlsym(handle, c"nvmlEventSetWait_v2".as_ptr()) };
            if v2.is_null() {
                symbol!(c"nvmlEventSetWait", FnEventSetWait)
            } else {
                // SAFETY: as in `symbol!`; v1 and v2 share a C signature.
                unsafe { std::mem::transmute::<*mut c_void, FnEventSetWait>(v2) }
            }
        };
        let init = symbol!(c"nvmlInit_v2", FnInit);
        let api = Api {
            error_string: symbol!(c"nvmlErrorString", FnErrorString),
            device_get_count: symbol!(c"nvmlDeviceGetCount_v2", FnCount),
            device_get_handle_by_index: symbol!(c"nvmlDeviceGetHandleByIndex_v2", FnHandleByIndex),
            device_get_handle_by_uuid: symbol!(c"nvmlDeviceGetHandleByUUID", FnHandleByUuid),
            device_get_uuid: symbol!(c"nvmlDeviceGetUUID", FnDeviceString),
            device_get_name: symbol!(c"nvmlDeviceGetName", FnDeviceString),
            device_get_minor_number: symbol!(c"nvmlDeviceGetMinorNumber", FnDeviceUint),
            device_get_memory_info: symbol!(c"nvmlDeviceGetMemoryInfo", FnMemoryInfo),
            device_get_pci_info: symbol!(c"nvmlDeviceGetPciInfo_v3", FnPciInfo),
            system_get_driver_version: symbol!(c"nvmlSystemGetDriverVersion", FnSystemString),
            event_set_create: symbol!(c"nvmlEventSetCreate", FnEventSetCreate),
            device_get_supported_event_types: symbol!(
                c"nvmlDeviceGetSupportedEventTypes",
                FnSupportedEvents
            ),
            device_register_events: symbol!(c"nvmlDeviceRegisterEvents", FnRegisterEvents),
            event_set_wait,
            event_set_free: symbol!(c"nvmlEventSetFree", FnEventSetFree),
        };
        let library = NvmlLibrary { api: Arc::new(api) };
        // SAFETY: nvmlInit_v2 takes no arguments; calling it more than once
        // only bumps NVML's reference count.
        let rc = unsafe { init() };
        library.api.check("nvmlInit_v2", rc)?;
        Ok(library)
    }
}

impl Api {
    fn check(&self, function: &'static str, rc: Return) -> Result<(), NvmlError> {
        if rc == SUCCESS {
            return Ok(());
        }
        // SAFETY: nvmlErrorString accepts any nvmlReturn_t and returns NULL
        // or a pointer to a static NUL-terminated string.
        let message = unsafe {
            let text = (self.error_string)(rc);
            if text.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        Err(NvmlError::Call {
            function,
            code: rc,
            message,
        })
    }

    fn handle_by_index(&self, index: u32) -> Result<DeviceHandle, NvmlError> {
        let mut handle: DeviceHandle = std::ptr::null_mut();
        // SAFETY: `handle` is a live, writable nvmlDevice_t slot.
        let rc = unsafe { (self.device_get_handle_by_index)(index, &mut handle) };
        self.check("nvmlDeviceGetHandleByIndex_v2", rc)?;
        Ok(handle)
    }

    fn handle_by_uuid(&self, uuid: &str) -> Result<DeviceHandle, NvmlError> {
        let c_uuid = CString::new(uuid).map_err(|_| NvmlError::InvalidUuid(uuid.to_string()))?;
        let mut handle: DeviceHandle = std::ptr::null_mut();
        // SAFETY: `c_uuid` is NUL-terminated and outlives the call; `handle`
        // is a live, writable slot.
        let rc = unsafe { (self.device_get_handle_by_uuid)(c_uuid.as_ptr(), &mut handle) };
        self.check("nvmlDeviceGetHandleByUUID", rc)?;
        Ok(handle)
    }

    /// `handle` must come from NVML (by index, by UUID or in an event).
    fn uuid(&self, handle: DeviceHandle) -> Result<String, NvmlError> {
        let mut buffer = [0u8; UUID_BUFFER];
        // SAFETY: `handle` came from NVML, which is never shut down; the
        // buffer is writable for the length passed.
        let rc = unsafe {
            (self.device_get_uuid)(handle, buffer.as_mut_ptr().cast(), UUID_BUFFER as c_uint)
        };
        self.check("nvmlDeviceGetUUID", rc)?;
        Ok(buffer_text(&buffer))
    }

    fn describe(&self, index: u32) -> Result<NvmlDevice, NvmlError> {
        let handle = self.handle_by_index(index)?;
        let uuid = self.uuid(handle)?;

        let mut name = [0u8; NAME_BUFFER];
        // SAFETY: as in `uuid`.
        let rc = unsafe {
            (self.device_get_name)(handle, name.as_mut_ptr().cast(), NAME_BUFFER as c_uint)
        };
        let name = match self.check("nvmlDeviceGetName", rc) {
            Ok(()) => buffer_text(&name),
            Err(e) => {
                tracing::debug!(%uuid, error = %e, "GPU name unknown");
                String::new()
            }
        };

        let mut minor: c_uint = 0;
        // SAFETY: `handle` came from NVML; `minor` is a live, writable slot.
        let rc = unsafe { (self.device_get_minor_number)(handle, &mut minor) };
        let minor = self
            .check("nvmlDeviceGetMinorNumber", rc)
            .ok()
            .map(|()| minor);

        let mut memory = RawMemory::default();
        // SAFETY: `memory` is a live nvmlMemory_t (layout asserted above).
        let rc = unsafe { (self.device_get_memory_info)(handle, &mut memory) };
        let memory_total_bytes = self
            .check("nvmlDeviceGetMemoryInfo", rc)
            .ok()
            .map(|()| memory.total);

        let mut pci = RawPciInfo {
            bus_id_legacy: [0; 16],
            domain: 0,
            bus: 0,
            device: 0,
            pci_device_id: 0,
            pci_sub_system_id: 0,
            bus_id: [0; 32],
        };
        // SAFETY: `pci` is a live nvmlPciInfo_t (layout asserted above).
        let rc = unsafe { (self.device_get_pci_info)(handle, &mut pci) };
        let pci_bus_id = self
            .check("nvmlDeviceGetPciInfo_v3", rc)
            .ok()
            .map(|()| buffer_text(&pci.bus_id))
            .filter(|id| !id.is_empty());

        Ok(NvmlDevice {
            index,
            uuid,
            name,
            minor,
            memory_total_bytes,
            pci_bus_id,
        })
    }
}

impl Nvml for NvmlLibrary {
    fn driver_version(&self) -> Result<String, NvmlError> {
        let mut buffer = [0u8; DRIVER_VERSION_BUFFER];
        // SAFETY: the buffer is writable for the length passed.
        let rc = unsafe {
            (self.api.system_get_driver_version)(
                buffer.as_mut_ptr().cast(),
                DRIVER_VERSION_BUFFER as c_uint,
            )
        };
        self.api.check("nvmlSystemGetDriverVersion", rc)?;
        Ok(buffer_text(&buffer))
    }

    fn devices(&self) -> Result<Vec<NvmlDevice>, NvmlError> {
        let mut count: c_uint = 0;
        // SAFETY: `count` is a live, writable slot.
        let rc = unsafe { (self.api.device_get_count)(&mut count) };
        self.api.check("nvmlDeviceGetCount_v2", rc)?;
        (0..count).map(|index| self.api.describe(index)).collect()
    }

    fn probe(&self, uuid: &str) -> Result<(), NvmlError> {
        let handle = self.api.handle_by_uuid(uuid)?;
        let mut memory = RawMemory::default();
        // SAFETY: `handle` came from NVML; `memory` is a live nvmlMemory_t.
        let rc = unsafe { (self.api.device_get_memory_info)(handle, &mut memory) };
        self.api.check("nvmlDeviceGetMemoryInfo", rc)
    }

    fn watch_events(&self, uuids: &[String]) -> Result<NvmlEventRegistration, NvmlError> {
        let mut set: EventSetHandle = std::ptr::null_mut();
        // SAFETY: `set` is a live, writable nvmlEventSet_t slot.
        let rc = unsafe { (self.api.event_set_create)(&mut set) };
        self.api.check("nvmlEventSetCreate", rc)?;
        // Owns the set from here on, so every early return frees it.
        let source = LibraryEventSource {
            api: Arc::clone(&self.api),
            set,
        };

        let wanted =
            EVENT_TYPE_XID_CRITICAL_ERROR | EVENT_TYPE_DOUBLE_BIT_ECC | EVENT_TYPE_SINGLE_BIT_ECC;
        let mut unregistered = Vec::new();
        for uuid in uuids {
            let registered = self.api.handle_by_uuid(uuid).and_then(|handle| {
                let mut supported: c_ulonglong = 0;
                // SAFETY: `handle` came from NVML; `supported` is writable.
                let rc =
                    unsafe { (self.api.device_get_supported_event_types)(handle, &mut supported) };
                self.api.check("nvmlDeviceGetSupportedEventTypes", rc)?;
                // SAFETY: `handle` and `set` came from NVML and are live.
                let rc =
                    unsafe { (self.api.device_register_events)(handle, wanted & supported, set) };
                self.api.check("nvmlDeviceRegisterEvents", rc)
            });
            if let Err(e) = registered {
                unregistered.push((uuid.clone(), e));
            }
        }
        Ok(NvmlEventRegistration {
            source: Box::new(source),
            unregistered,
        })
    }
}

/// An NVML event set, freed on drop.
struct LibraryEventSource {
    api: Arc<Api>,
    set: EventSetHandle,
}

// SAFETY: the set handle is an opaque token that is only ever passed back to
// NVML, and NVML documents itself as thread-safe ("it is safe to make
// simultaneous NVML calls from multiple threads"); the source is used by one
// thread at a time (`wait` takes `&mut self`).
unsafe impl Send for LibraryEventSource {}

impl NvmlEventSource for LibraryEventSource {
    fn wait(&mut self, timeout: Duration) -> Result<Option<NvmlEvent>, NvmlError> {
        let mut data = RawEventData {
            device: std::ptr::null_mut(),
            event_type: 0,
            event_data: 0,
            gpu_instance_id: 0,
            compute_instance_id: 0,
        };
        let millis = c_uint::try_from(timeout.as_millis()).unwrap_or(c_uint::MAX);
        // SAFETY: `set` is live until drop; `data` is a live nvmlEventData_t
        // large enough for either wait version.
        let rc = unsafe { (self.api.event_set_wait)(self.set, &mut data, millis) };
        if rc == ERROR_TIMEOUT {
            return Ok(None);
        }
        self.api.check("nvmlEventSetWait", rc)?;
        let uuid = if data.device.is_null() {
            None
        } else {
            match self.api.uuid(data.device) {
                Ok(uuid) => Some(uuid),
                Err(e) => {
                    tracing::warn!(error = %e, "NVML event names a GPU whose UUID cannot be read");
                    None
                }
            }
        };
        Ok(Some(NvmlEvent {
            uuid,
            event_type: data.event_type,
            data: data.event_data,
        }))
    }
}

impl Drop for LibraryEventSource {
    fn drop(&mut self) {
        // SAFETY: `set` came from nvmlEventSetCreate and is freed only here.
        let rc = unsafe { (self.api.event_set_free)(self.set) };
        if let Err(e) = self.api.check("nvmlEventSetFree", rc) {
            tracing::debug!(error = %e, "freeing the NVML event set");
        }
    }
}

// ---------------------------------------------------------------------------
// The fake.

#[derive(Default)]
struct FakeState {
    driver_version: String,
    devices: Vec<NvmlDevice>,
    lost: BTreeSet<String>,
    events_unsupported: BTreeSet<String>,
    queue: VecDeque<Result<NvmlEvent, NvmlError>>,
}

#[derive(Default)]
struct FakeShared {
    state: Mutex<FakeState>,
    queued: Condvar,
}

impl FakeShared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An in-memory NVML for tests: GPUs are given, events are injected, and a
/// GPU can be made "lost" (its probes fail as after XID 79) and found again.
#[derive(Clone, Default)]
pub struct FakeNvml {
    shared: Arc<FakeShared>,
}

impl std::fmt::Debug for FakeNvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeNvml")
            .field("devices", &self.shared.lock().devices)
            .finish()
    }
}

impl FakeNvml {
    pub fn new(devices: Vec<NvmlDevice>) -> Self {
        let fake = FakeNvml::default();
        {
            let mut state = fake.shared.lock();
            state.devices = devices;
            state.driver_version = "550.54.15-fake".to_string();
        }
        fake
    }

    /// Queues an event for the next `wait`.
    pub fn inject_event(&self, event: NvmlEvent) {
        self.shared.lock().queue.push_back(Ok(event));
        self.shared.queued.notify_all();
    }

    /// Queues an XID critical error on a GPU.
    pub fn inject_xid(&self, uuid: &str, xid: u64) {
        self.inject_event(NvmlEvent {
            uuid: Some(uuid.to_string()),
            event_type: EVENT_TYPE_XID_CRITICAL_ERROR,
            data: xid,
        });
    }

    /// Makes the next `wait` fail with this NVML error code.
    pub fn inject_wait_error(&self, code: i32) {
        self.shared.lock().queue.push_back(Err(NvmlError::Call {
            function: "nvmlEventSetWait",
            code,
            message: "injected".to_string(),
        }));
        self.shared.queued.notify_all();
    }

    /// A lost GPU fails its probes with `NVML_ERROR_GPU_IS_LOST`.
    pub fn set_lost(&self, uuid: &str, lost: bool) {
        let mut state = self.shared.lock();
        if lost {
            state.lost.insert(uuid.to_string());
        } else {
            state.lost.remove(uuid);
        }
    }

    /// Registering this GPU's events fails with `NVML_ERROR_NOT_SUPPORTED`.
    pub fn set_events_unsupported(&self, uuid: &str) {
        self.shared
            .lock()
            .events_unsupported
            .insert(uuid.to_string());
    }

    /// Events queued and not yet taken by a `wait`.
    pub fn pending_events(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl Nvml for FakeNvml {
    fn driver_version(&self) -> Result<String, NvmlError> {
        Ok(self.shared.lock().driver_version.clone())
    }

    fn devices(&self) -> Result<Vec<NvmlDevice>, NvmlError> {
        Ok(self.shared.lock().devices.clone())
    }

    fn probe(&self, uuid: &str) -> Result<(), NvmlError> {
        let state = self.shared.lock();
        if !state.devices.iter().any(|d| d.uuid == uuid) {
            return Err(NvmlError::Call {
                function: "nvmlDeviceGetHandleByUUID",
                code: 6,
                message: "Not Found".to_string(),
            });
        }
        if state.lost.contains(uuid) {
            return Err(NvmlError::Call {
                function: "nvmlDeviceGetMemoryInfo",
                code: ERROR_GPU_IS_LOST,
                message: "GPU is lost".to_string(),
            });
        }
        Ok(())
    }

    fn watch_events(&self, uuids: &[String]) -> Result<NvmlEventRegistration, NvmlError> {
        let state = self.shared.lock();
        let unregistered = uuids
            .iter()
            .filter(|uuid| state.events_unsupported.contains(*uuid))
            .map(|uuid| {
                (
                    uuid.clone(),
                    NvmlError::Call {
                        function: "nvmlDeviceRegisterEvents",
                        code: ERROR_NOT_SUPPORTED,
                        message: "Not Supported".to_string(),
                    },
                )
            })
            .collect();
        Ok(NvmlEventRegistration {
            source: Box::new(FakeEventSource {
                shared: Arc::clone(&self.shared),
            }),
            unregistered,
        })
    }
}

struct FakeEventSource {
    shared: Arc<FakeShared>,
}

impl NvmlEventSource for FakeEventSource {
    fn wait(&mut self, timeout: Duration) -> Result<Option<NvmlEvent>, NvmlError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(next) = state.queue.pop_front() {
                return next.map(Some);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            state = match self.shared.queued.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_without_the_driver_is_an_error_not_a_crash() {
        // CI hosts have no NVIDIA driver; where one is installed this
        // exercises the real adapter instead.
        match NvmlLibrary::load() {
            Ok(library) => {
                let devices = library.devices().unwrap();
                for device in devices {
                    assert!(device.uuid.starts_with("GPU-"), "{device:?}");
                }
            }
            Err(NvmlError::Load { library, message }) => {
                assert_eq!(library, LIBRARY_NAME);
                assert!(!message.is_empty());
            }
            Err(other) => {
                // A driver present but unusable (no GPU, no permission).
                assert!(other.code().is_some() || matches!(other, NvmlError::MissingSymbol { .. }));
            }
        }
    }

    #[test]
    fn fake_wait_times_out_then_delivers_in_order() {
        let fake = FakeNvml::new(Vec::new());
        let mut source = fake.watch_events(&[]).unwrap().source;
        assert_eq!(source.wait(Duration::from_millis(10)).unwrap(), None);
        fake.inject_xid("GPU-a", 79);
        fake.inject_wait_error(ERROR_GPU_IS_LOST);
        let first = source.wait(Duration::from_millis(10)).unwrap().unwrap();
        assert_eq!(first.data, 79);
        assert_eq!(first.uuid.as_deref(), Some("GPU-a"));
        let second = source.wait(Duration::from_millis(10)).unwrap_err();
        assert_eq!(second.code(), Some(ERROR_GPU_IS_LOST));
        assert_eq!(fake.pending_events(), 0);
    }

    #[test]
    fn buffer_text_stops_at_the_first_nul() {
        assert_eq!(buffer_text(b"GPU-1234\0garbage"), "GPU-1234");
        assert_eq!(buffer_text(b"no-nul"), "no-nul");
    }
}
