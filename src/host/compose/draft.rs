//! The service spec a translation builds: the parts the key handlers of `service.rs`,
//! `deploy.rs`, `ports.rs` and `mounts.rs` fill, and the spec they make together.

use serde_json::{json, Map as JsonMap, Value};

use super::values::stack_labels;

/// A service spec being built: what the handlers read, and the parts they fill.
pub(super) struct Draft<'a> {
    pub doc: &'a Value,
    pub stack: &'a str,
    /// The service's short name, as in the compose file.
    pub name: &'a str,
    /// `ServiceSpec` fields but the task template and the endpoint.
    pub service: JsonMap<String, Value>,
    /// `TaskTemplate` fields but the container spec.
    pub task: JsonMap<String, Value>,
    /// `ContainerSpec` fields.
    pub container: JsonMap<String, Value>,
    /// `EndpointSpec` fields.
    pub endpoint: JsonMap<String, Value>,
}

impl<'a> Draft<'a> {
    /// The spec of a service that sets nothing but its image: what `docker stack deploy`
    /// sends for keys the file leaves out.
    pub fn new(doc: &'a Value, stack: &'a str, name: &'a str) -> Self {
        let mut container = JsonMap::new();
        container.insert("Labels".into(), stack_labels(stack, None));
        // docker/cli always sends an empty Privileges block; sending the same keeps specs equal.
        container.insert("Privileges".into(), json!({"NoNewPrivileges": false}));
        let mut draft = Draft {
            doc,
            stack,
            name,
            service: JsonMap::new(),
            task: JsonMap::new(),
            container,
            endpoint: JsonMap::new(),
        };
        // The stack's `default` network unless the service names its own.
        draft.attach(vec![(
            format!("{stack}_default"),
            vec![name.to_string()],
            None,
        )]);
        let service = &mut draft.service;
        service.insert("Name".into(), json!(format!("{stack}_{name}")));
        service.insert("Labels".into(), stack_labels(stack, None));
        service.insert("Mode".into(), json!({"Replicated": {"Replicas": 1}}));
        draft
    }

    /// Sets one `ContainerSpec` field.
    pub fn contain(&mut self, field: &str, value: Value) -> Result<(), String> {
        self.container.insert(field.into(), value);
        Ok(())
    }

    /// Sets the task's networks: (full network name, aliases, driver options), ordered by
    /// name.
    pub fn attach(&mut self, mut nets: Vec<(String, Vec<String>, Option<Value>)>) {
        nets.sort_by(|a, b| a.0.cmp(&b.0));
        let nets = nets
            .into_iter()
            .map(|(target, aliases, driver_opts)| {
                let mut n = json!({"Target": target});
                if !aliases.is_empty() {
                    n["Aliases"] = json!(aliases);
                }
                if let Some(o) = driver_opts {
                    n["DriverOpts"] = o;
                }
                n
            })
            .collect();
        self.task.insert("Networks".into(), Value::Array(nets));
    }

    /// The finished `ServiceSpec`.
    pub fn finish(mut self) -> Value {
        self.task
            .insert("ContainerSpec".into(), Value::Object(self.container));
        self.service
            .insert("TaskTemplate".into(), Value::Object(self.task));
        self.service
            .insert("EndpointSpec".into(), Value::Object(self.endpoint));
        Value::Object(self.service)
    }
}
