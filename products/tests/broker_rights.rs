//! What the broker lets products and orders do to the order queue, with the rights of the
//! deployment: the queues of `kube/base/rabbitmq/20-queues.json` and the permissions of
//! `30-permissions.json` (both also mounted by `docker-compose.yml`) are imported with
//! `rabbitmqctl` into a virtual host of the test's own, for users of its own.
//!
//! `rabbitmqctl` talks to the node `RABBITMQ_NODENAME` names, as it always does, which must be
//! the node behind `AMQP_URL` (`scripts/test` starts the local one).

use std::path::Path;

use common::{
    amqp::{
        check_work_queue, declare_event_queue, declare_events_exchange, declare_reply_queue,
        declare_work_queue,
    },
    messages::{Event, OrderCancelledV1, OrderCreatedV1},
    testing::{amqp_url, publish, queue_counts, request_properties, require_broker},
};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
        QueuePurgeOptions,
    },
    types::FieldTable,
};
use serde_json::{Value, json};

/// The queue the deployment's definitions declare, in the test's own virtual host.
const QUEUE: &str = "ORDER";
/// The events exchange and products' queue bound to it, as the definitions declare them.
const EVENTS_EXCHANGE: &str = "shop.events";
const EVENTS_QUEUE: &str = "products.order-events";

/// A virtual host with the deployment's queues and permissions, and a products and an orders
/// user with those permissions; all removed when dropped.
struct Deployment {
    vhost: String,
    users: [String; 2],
    password: String,
}

impl Deployment {
    async fn import() -> Self {
        require_broker().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let deployment = Self {
            vhost: format!("broker-rights-{id}"),
            users: [format!("products-{id}"), format!("orders-{id}")],
            password: format!("test-only-{id}"),
        };
        let file = std::env::temp_dir().join(format!("broker-rights-{id}.json"));
        std::fs::write(&file, deployment.definitions().to_string()).expect("write definitions");
        let imported = rabbitmqctl(&["import_definitions", &file.to_string_lossy()]).await;
        let _ = std::fs::remove_file(&file);
        imported.expect("the deployment's definitions import");
        deployment
    }

    /// The repository's queue and permission definitions, moved to this virtual host and
    /// these users.
    fn definitions(&self) -> Value {
        let kube = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kube/base/rabbitmq");
        let read = |name: &str| -> Value {
            let text = std::fs::read_to_string(kube.join(name))
                .unwrap_or_else(|e| panic!("read {name}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {name}: {e}"))
        };
        let topology = read("20-queues.json");
        let in_this_vhost = |key: &str| -> Value {
            let mut items = topology[key].clone();
            for item in items.as_array_mut().expect("a list") {
                item["vhost"] = json!(self.vhost);
            }
            items
        };
        let permissions: Vec<Value> = read("30-permissions.json")["permissions"]
            .as_array()
            .expect("a list of permissions")
            .iter()
            .filter_map(|p| {
                let user = self.user(p["user"].as_str()?)?;
                let mut p = p.clone();
                p["user"] = json!(user);
                p["vhost"] = json!(self.vhost);
                Some(p)
            })
            .collect();
        assert_eq!(permissions.len(), 2, "permissions for products and orders");
        json!({
            "vhosts": [{"name": self.vhost}],
            "users": self.users.iter().map(|name| json!({
                "name": name, "password": self.password, "tags": []
            })).collect::<Vec<_>>(),
            "permissions": permissions,
            "queues": in_this_vhost("queues"),
            "exchanges": in_this_vhost("exchanges"),
            "bindings": in_this_vhost("bindings"),
        })
    }

    /// This test's name for the deployment's user `service`.
    fn user(&self, service: &str) -> Option<&String> {
        match service {
            "products" => Some(&self.users[0]),
            "orders" => Some(&self.users[1]),
            _ => None,
        }
    }

    async fn connect_as(&self, service: &str) -> Connection {
        let mut url = url::Url::parse(&amqp_url()).expect("AMQP_URL is a URL");
        url.set_username(self.user(service).expect("a deployment user"))
            .and_then(|()| url.set_password(Some(&self.password)))
            .expect("credentials fit the URL");
        url.set_path(&self.vhost);
        Connection::connect(url.as_str(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{service} connects: {e}"))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.vhost])
            .status();
        for user in &self.users {
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["-q", "delete_user", user])
                .status();
        }
    }
}

/// Runs `rabbitmqctl`; its error output when it fails.
async fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("rabbitmqctl did not run ({e}); this test needs it on PATH"));
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn channel(connection: &Connection) -> Channel {
    connection.create_channel().await.expect("open a channel")
}

/// Panics unless `result` is the broker's refusal for want of a right.
fn assert_refused<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>, what: &str) {
    match result {
        Ok(value) => panic!("products may {what}: {value:?}"),
        Err(e) => assert!(
            format!("{e:#}").contains("ACCESS_REFUSED"),
            "{what} was refused for another reason: {e:#}"
        ),
    }
}

#[tokio::test]
async fn products_may_find_and_publish_to_the_order_queue_but_not_redeclare_delete_purge_or_read_it()
 {
    let deployment = Deployment::import().await;
    let products = deployment.connect_as("products").await;

    check_work_queue(&channel(&products).await, QUEUE)
        .await
        .expect("products finds the queue without any right on it");
    let publisher = channel(&products).await;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("publisher confirms");
    let properties = request_properties("order.create.v1", "c-1", "amq.gen-nobody");
    publish(&publisher, QUEUE, b"{}", properties).await;
    declare_reply_queue(&channel(&products).await)
        .await
        .expect("products declares its per-request reply queues");

    assert_refused(
        declare_work_queue(&channel(&products).await, QUEUE).await,
        "declare the queue",
    );
    let delete = QueueDeleteOptions::default();
    for queue in [QUEUE, "ORDER.dlq"] {
        let deleted = channel(&products)
            .await
            .queue_delete(queue.into(), delete)
            .await;
        assert_refused(deleted, &format!("delete {queue}"));
    }
    let purged = channel(&products)
        .await
        .queue_purge(QUEUE.into(), QueuePurgeOptions::default())
        .await;
    assert_refused(purged, "purge the queue");
    let consumer = channel(&products)
        .await
        .basic_consume(
            QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_refused(consumer.map(|c| c.tag()), "consume the queue");

    // Orders owns the queue: its declaration, with the arguments of topology.rs, matches the
    // definitions', and the request products published is there for it.
    let orders = deployment.connect_as("orders").await;
    declare_work_queue(&channel(&orders).await, QUEUE)
        .await
        .expect("orders declares the queue as the definitions made it");
    let (messages, _) = queue_counts(&channel(&orders).await, QUEUE)
        .await
        .expect("the queue is still there");
    assert_eq!(messages, 1);
    let _ = products.close(200, "done".into()).await;
    let _ = orders.close(200, "done".into()).await;
}

/// Publishes an (empty) order event to the events exchange, with publisher confirms.
async fn publish_event(connection: &Connection) -> lapin::Result<lapin::Confirmation> {
    let publisher = channel(connection).await;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    publisher
        .basic_publish(
            EVENTS_EXCHANGE.into(),
            OrderCancelledV1::ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await?
        .await
}

#[tokio::test]
async fn only_orders_may_publish_order_events_and_products_may_bind_and_read_its_own_queue() {
    let deployment = Deployment::import().await;
    let products = deployment.connect_as("products").await;
    let orders = deployment.connect_as("orders").await;

    declare_events_exchange(&channel(&orders).await, EVENTS_EXCHANGE)
        .await
        .expect("orders declares the exchange as the definitions made it");
    let keys = [OrderCreatedV1::ROUTING_KEY, OrderCancelledV1::ROUTING_KEY];
    declare_event_queue(
        &channel(&products).await,
        EVENTS_EXCHANGE,
        EVENTS_QUEUE,
        &keys,
    )
    .await
    .expect("products declares and binds its queue as the definitions made them");

    publish_event(&orders)
        .await
        .expect("orders publishes an event");
    assert_refused(
        publish_event(&products).await,
        "publish an order event (and so forge a cancellation)",
    );
    let (messages, _) = queue_counts(&channel(&products).await, EVENTS_QUEUE)
        .await
        .expect("products looks at its queue");
    assert_eq!(messages, 1, "only orders' event arrived");
    let consumer = channel(&products)
        .await
        .basic_consume(
            EVENTS_QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(consumer.is_ok(), "products reads its queue: {consumer:?}");
    let deleted = channel(&orders)
        .await
        .queue_delete(EVENTS_QUEUE.into(), QueueDeleteOptions::default())
        .await;
    assert!(
        format!(
            "{:#}",
            deleted.expect_err("orders may not delete products' queue")
        )
        .contains("ACCESS_REFUSED")
    );
    let _ = products.close(200, "done".into()).await;
    let _ = orders.close(200, "done".into()).await;
}
