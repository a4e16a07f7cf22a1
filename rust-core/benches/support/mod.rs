//! Shared bench fixtures: an in-memory registry and instant adapters, so benches measure the
//! engine's own cost, not HTTP or SDK latency.

#![allow(dead_code)]

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use streamguard::{
    BackendError, ManagerConfig, ProviderAdapter, ProviderError, ProviderInfo, ProviderList,
    ProviderRegistry, RegistryHealth, StreamingProviderManager,
};

/// A registry held in memory.
pub struct MemoryRegistry {
    pub providers: Mutex<Vec<ProviderInfo>>,
    pub unhealthy: Mutex<Vec<String>>,
}

#[async_trait]
impl ProviderRegistry for MemoryRegistry {
    async fn providers(&self, _etag: Option<&str>) -> Result<ProviderList, BackendError> {
        Ok(ProviderList::Fresh {
            providers: self.providers.lock().unwrap().clone(),
            etag: None,
        })
    }
    async fn health(&self, provider: &str) -> Result<RegistryHealth, BackendError> {
        let down = self.unhealthy.lock().unwrap().iter().any(|p| p == provider);
        Ok(RegistryHealth {
            healthy: !down,
            status: if down { "down" } else { "active" }.into(),
        })
    }
}

/// An adapter that answers at once; `fatal` makes connects fail with an auth error and `down`
/// makes them (and probes) fail with a network error.
pub struct InstantAdapter {
    pub fatal: AtomicBool,
    pub down: AtomicBool,
}

impl InstantAdapter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            fatal: AtomicBool::new(false),
            down: AtomicBool::new(false),
        })
    }
    fn result(&self) -> Result<(), ProviderError> {
        if self.fatal.load(Ordering::Relaxed) {
            Err(ProviderError::unauthorized("bench"))
        } else if self.down.load(Ordering::Relaxed) {
            Err(ProviderError::network("bench"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ProviderAdapter for InstantAdapter {
    async fn initialize(&self, _p: &ProviderInfo) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn start_stream(&self, _s: &str) -> Result<(), ProviderError> {
        self.result()
    }
    async fn join_stream(&self, _s: &str) -> Result<(), ProviderError> {
        self.result()
    }
    async fn leave_stream(&self, _s: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn probe(&self) -> Result<(), ProviderError> {
        if self.down.load(Ordering::Relaxed) {
            Err(ProviderError::network("bench"))
        } else {
            Ok(())
        }
    }
}

/// A manager over the in-memory registry with adapters "a", "b", "c" (priorities 1, 2, 3).
pub fn manager(
    config: ManagerConfig,
) -> (
    StreamingProviderManager,
    Arc<MemoryRegistry>,
    [Arc<InstantAdapter>; 3],
) {
    let registry = Arc::new(MemoryRegistry {
        providers: Mutex::new(vec![
            ProviderInfo::new("a", 1),
            ProviderInfo::new("b", 2),
            ProviderInfo::new("c", 3),
        ]),
        unhealthy: Mutex::new(Vec::new()),
    });
    let m = StreamingProviderManager::builder(config)
        .registry(registry.clone())
        .build()
        .unwrap();
    let adapters = [
        InstantAdapter::new(),
        InstantAdapter::new(),
        InstantAdapter::new(),
    ];
    for (name, a) in ["a", "b", "c"].iter().zip(adapters.iter()) {
        m.register_adapter(name, a.clone()).unwrap();
    }
    (m, registry, adapters)
}

pub fn config() -> ManagerConfig {
    ManagerConfig::new("http://127.0.0.1:9/api")
}
