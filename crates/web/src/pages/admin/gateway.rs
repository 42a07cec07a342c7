//! Connection policies (R-SES-2 to 10): the ordered list every proxied connection is matched
//! against, each policy's rules as an editable document (groups by name), and "which policy
//! would apply, and why". Everything goes through `/api/v1/connection-policies`, as the CLI does.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::Response;
use portcullis_app::names::lookup;
use portcullis_app::AppError;
use portcullis_core::role::Role;
use portcullis_store::Named;
use serde_json::{json, Value};

use super::kit::{self, button, cell, form, link, mono, need, seg, select, table, text, textarea, with_hint};
use super::Notice;
use crate::session::{Submitted, Viewer};
use crate::view::{error_page, page};
use crate::Web;

const API: &str = "/api/v1/connection-policies";
const BACK: &str = "/admin/connection-policies";

/// What the API shows of a policy that is not part of its rules.
const NOT_RULES: &[&str] = &["id", "name", "position", "group_names", "created_at", "updated_at"];

const INTRO: &str = "Every proxied connection takes the first enabled policy, in this order, that matches its protocol, client network, proxy port and target; a connection no policy matches is refused. A policy decides the target leg, the channels, content rules, AA plugin and waits for a person.";

fn join(v: &Value) -> String {
    kit::items(v).iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
}

fn targets(p: &Value) -> String {
    let list: Vec<String> = kit::items(&p["targets"])
        .iter()
        .map(|t| {
            let what = t["asset"].as_str().or(t["network"].as_str()).unwrap_or("?");
            match t["port"].as_u64() {
                Some(port) => format!("{what}:{port}"),
                None => what.to_owned(),
            }
        })
        .collect();
    if list.is_empty() {
        "any".into()
    } else {
        list.join(", ")
    }
}

fn channels(p: &Value) -> String {
    let list: Vec<&str> = kit::items(&p["channels"]).iter().filter_map(|c| c["kind"].as_str()).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Waits, plugin and content rules, in a few words.
fn extras(p: &Value) -> String {
    let mut out = Vec::new();
    if p["gateway_authentication"] == true {
        out.push("gateway authentication".to_owned());
    }
    if !kit::items(&p["four_eyes_groups"]).is_empty() {
        out.push("four-eyes".to_owned());
    }
    if let Some(a) = p["aa_plugin"].as_str() {
        out.push(format!("AA plugin {a}"));
    }
    let n = kit::items(&p["content"]).len();
    if n > 0 {
        out.push(format!("{n} content rule{}", if n == 1 { "" } else { "s" }));
    }
    out.join("; ")
}

/// The policy's rules as the editor shows them: the document without what is not a rule,
/// group ids replaced by names.
fn rules_text(p: &Value) -> String {
    let mut rules = p.clone();
    if let Some(o) = rules.as_object_mut() {
        for k in NOT_RULES {
            o.remove(*k);
        }
    }
    let name = |id: &Value| p["group_names"].get(id.as_str().unwrap_or_default()).cloned().unwrap_or(id.clone());
    if let Some(list) = rules["four_eyes_groups"].as_array_mut() {
        for g in list.iter_mut() {
            *g = name(g);
        }
    }
    if let Some(chans) = rules["channels"].as_array_mut() {
        for c in chans {
            if let Some(list) = c["groups"].as_array_mut() {
                for g in list.iter_mut() {
                    *g = name(g);
                }
            }
        }
    }
    ordered(&rules)
}

/// A rules document with its fields in the order the API documents them (protocol first).
fn ordered(rules: &Value) -> String {
    let Some(o) = rules.as_object() else { return String::new() };
    let fields = portcullis_core::gateway::SPEC_FIELDS.iter().copied();
    let rest = o.keys().map(String::as_str).filter(|k| !portcullis_core::gateway::SPEC_FIELDS.contains(k));
    let lines: Vec<String> = fields
        .chain(rest)
        .filter_map(|k| {
            let v = o.get(k)?;
            let pretty = serde_json::to_string_pretty(v).ok()?.replace('\n', "\n  ");
            Some(format!("  \"{k}\": {pretty}"))
        })
        .collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

/// A starting document for a new policy of `protocol`.
fn template(protocol: &str) -> String {
    let channels = match protocol {
        "ssh" => json!([{ "kind": "shell" }, { "kind": "sftp" }]),
        // RDP: the clipboard; drive, audio and dynamic channels when the policy allows them.
        "rdp" => json!([{ "kind": "clipboard" }]),
        _ => json!([{ "kind": "shell" }]),
    };
    let t = json!({ "protocol": protocol, "clients": ["10.0.0.0/8"], "targets": [{ "asset": "db*" }], "channels": channels,
                    "gateway_authentication": false, "four_eyes_groups": [], "content": [] });
    ordered(&t)
}

const RULES_HINT: &str = "JSON, as POST /api/v1/connection-policies takes it (see the API documentation): protocol, clients, listen_ports, targets, translate, source_address, algorithms, channels (kind, groups, windows, commands, destinations), pre_channel_check, time_zone, content (on, pattern, action), gateway_authentication, four_eyes_groups, wait_seconds, aa_plugin, usermapping. Groups by name.";

fn may_edit(v: &Viewer) -> bool {
    v.caller.has(Role::SecurityPolicyAdmin)
}

pub async fn list(State(web): State<Web>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let all = match kit::get(&web, &v, API).await {
        Ok(a) => a,
        Err(e) => return error_page(&web, &v, &e, "/admin"),
    };
    let rows: Vec<Vec<Value>> = kit::items(&all)
        .iter()
        .map(|p| {
            let id = kit::s(p, "id");
            let clients = join(&p["clients"]);
            vec![
                cell(p["position"].clone()),
                link(kit::s(p, "name"), &format!("{BACK}/{id}")),
                cell(kit::s(p, "protocol").to_uppercase()),
                cell(if p["enabled"] == true { "yes" } else { "no (matches nothing)" }),
                cell(if clients.is_empty() { "any".into() } else { clients }),
                cell(targets(p)),
                cell(channels(p)),
                cell(extras(p)),
            ]
        })
        .collect();
    let columns = ["#", "Policy", "Protocol", "Enabled", "Clients", "Targets", "Channels", "Also"];
    let mut sections = vec![
        json!({ "heading": "In the order they are tried", "table": table(&columns, rows, "No connection policies: every proxied connection is refused.") }),
        json!({ "heading": "Which policy would apply?", "forms": [explain_form(&json!({}))] }),
    ];
    if may_edit(&v) {
        let protocols = [("ssh", "SSH"), ("telnet", "Telnet (cleartext)")];
        let fields = vec![
            text("name", "Name", "", true),
            with_hint(text("position", "Position", "", false), "1 is tried first; empty: last"),
            select("protocol", "Protocol (for the starting rules)", "ssh", &protocols),
            with_hint(textarea("rules", "Rules", &template("ssh"), 16), RULES_HINT),
        ];
        sections.push(json!({ "heading": "Add a connection policy", "forms": [form("new-policy", BACK, "Add the policy", fields)] }));
    }
    let ctx = json!({ "title": "Connection policies", "notice": n.done, "intro": INTRO, "sections": sections });
    page(&web, &v, "admin.html", ctx)
}

fn explain_form(f: &Value) -> Value {
    let protocols = [("ssh", "SSH"), ("telnet", "Telnet")];
    let fields = vec![
        select("protocol", "Protocol", f["protocol"].as_str().unwrap_or("ssh"), &protocols),
        with_hint(text("client", "Client address", f["client"].clone(), true), "e.g. 10.1.2.3"),
        text("asset", "Asset", f["asset"].clone(), true),
        with_hint(text("listen_port", "Proxy port", f["listen_port"].clone(), false), "empty: the proxy's own"),
    ];
    form("explain", &format!("{BACK}/explain"), "Explain", fields)
}

/// The rules document from the form, group names turned into ids.
async fn rules_body(web: &Web, form: &Submitted) -> Result<Value, AppError> {
    let raw = need(form, "rules", "The rules")?;
    let mut rules: Value = serde_json::from_str(&raw).map_err(|e| {
        AppError::invalid(
            "rules",
            format!("the rules are not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
        )
    })?;
    if !rules.is_object() {
        return Err(AppError::invalid("rules", "the rules must be a JSON object ({ ... })"));
    }
    let by_name = |field: String, g: Value| async move {
        let Some(name) = g.as_str().map(str::trim) else { return Ok(g) };
        let found = lookup(web, &form.viewer.caller, Named::UserGroup, name).await?;
        match found.as_slice() {
            [(id, _)] => Ok(json!(id)),
            _ if name.len() == 36 && name.chars().filter(|c| *c == '-').count() == 4 => Ok(json!(name)),
            [] => Err(AppError::invalid(field, format!("there is no user group named '{name}'"))),
            _ => Err(AppError::invalid(field, format!("'{name}' names more than one user group"))),
        }
    };
    if let Some(list) = rules["four_eyes_groups"].as_array().cloned() {
        let mut ids = Vec::new();
        for (i, g) in list.into_iter().enumerate() {
            ids.push(by_name(format!("four_eyes_groups[{i}]"), g).await?);
        }
        rules["four_eyes_groups"] = json!(ids);
    }
    let n = rules["channels"].as_array().map_or(0, Vec::len);
    for c in 0..n {
        if let Some(list) = rules["channels"][c]["groups"].as_array().cloned() {
            let mut ids = Vec::new();
            for (i, g) in list.into_iter().enumerate() {
                ids.push(by_name(format!("channels[{c}].groups[{i}]"), g).await?);
            }
            rules["channels"][c]["groups"] = json!(ids);
        }
    }
    Ok(rules)
}

fn position(form: &Submitted) -> Result<Value, AppError> {
    match form.text("position") {
        None => Ok(Value::Null),
        Some(p) => p
            .trim()
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| AppError::invalid("position", format!("'{p}' is not a position (1 is tried first)"))),
    }
}

pub async fn create(State(web): State<Web>, form: Submitted) -> Response {
    let result = async {
        let name = need(&form, "name", "The name")?;
        let mut body = rules_body(&web, &form).await?;
        body["name"] = json!(name);
        body["position"] = position(&form)?;
        let made = kit::call(&web, &form.viewer, Method::POST, API, Some(body)).await?;
        Ok((format!("{BACK}/{}", kit::s(&made, "id")), format!("The connection policy {name} was added.")))
    }
    .await;
    kit::finish_at(&web, &form, result, BACK)
}

pub async fn show(State(web): State<Web>, v: Viewer, Path(id): Path<String>, Query(n): Query<Notice>) -> Response {
    let p = match async { kit::get(&web, &v, &format!("{API}/{}", seg(&id)?)).await }.await {
        Ok(p) => p,
        Err(e) => return error_page(&web, &v, &e, BACK),
    };
    let base = format!("{BACK}/{id}");
    let name = kit::s(&p, "name");
    let clients = join(&p["clients"]);
    let clients = if clients.is_empty() { "any".to_owned() } else { clients };
    let enabled = if p["enabled"] == true { "yes" } else { "no" };
    let facts = json!([
        ["Position", p["position"]],
        ["Protocol", kit::s(&p, "protocol").to_uppercase()],
        ["Enabled", enabled],
        ["Clients", clients],
        ["Targets", targets(&p)],
        ["Channels", channels(&p)],
        ["Also", extras(&p)],
    ]);
    let mut sections = vec![json!({ "heading": "Summary", "facts": facts })];
    if may_edit(&v) {
        let fields = vec![
            text("name", "Name", name, true),
            with_hint(text("position", "Position", p["position"].clone(), false), "1 is tried first"),
            with_hint(textarea("rules", "Rules", &rules_text(&p), 24), RULES_HINT),
        ];
        let delete = button("delete", &format!("{base}/delete"), "Delete the policy", "Delete the policy", vec![]);
        sections.push(json!({ "heading": "Edit", "forms": [form("policy", &format!("{base}/update"), "Save the policy", fields)] }));
        sections.push(json!({ "heading": "Delete", "forms": [delete] }));
    } else {
        sections.push(json!({ "heading": "Rules", "table": table(&["Rules"], vec![vec![mono(rules_text(&p))]], "") }));
    }
    let ctx = json!({ "title": format!("Connection policy {name}"), "notice": n.done, "sections": sections,
                      "links": [{ "href": BACK, "text": "All connection policies" }] });
    page(&web, &v, "admin.html", ctx)
}

pub async fn act(State(web): State<Web>, Path((id, action)): Path<(String, String)>, form: Submitted) -> Response {
    let base = format!("{BACK}/{id}");
    let result = async {
        let api = format!("{API}/{}", seg(&id)?);
        match action.as_str() {
            "update" => {
                let mut body = rules_body(&web, &form).await?;
                let name = need(&form, "name", "The name")?;
                body["name"] = json!(name);
                body["position"] = position(&form)?;
                kit::call(&web, &form.viewer, Method::PUT, &api, Some(body)).await?;
                Ok((base.clone(), format!("The connection policy {name} was saved.")))
            }
            "delete" => {
                kit::call(&web, &form.viewer, Method::DELETE, &api, None).await?;
                Ok((BACK.to_owned(), "The connection policy was deleted.".to_owned()))
            }
            _ => Err(AppError::not_found("that action")),
        }
    }
    .await;
    kit::finish_at(&web, &form, result, &base)
}

/// Which policy a connection would get, and why each other one did not apply.
pub async fn explain(State(web): State<Web>, form: Submitted) -> Response {
    let v = &form.viewer;
    let asked = json!({ "protocol": form.text("protocol").unwrap_or_else(|| "ssh".into()), "client": form.text("client"),
                        "asset": form.text("asset"), "listen_port": form.text("listen_port") });
    let answer = async {
        let mut body = json!({ "protocol": asked["protocol"], "client": need(&form, "client", "The client address")?,
                               "asset": need(&form, "asset", "The asset")? });
        if let Some(p) = form.text("listen_port") {
            let port: u16 =
                p.trim().parse().map_err(|_| AppError::invalid("listen_port", format!("'{p}' is not a port")))?;
            body["listen_port"] = json!(port);
        }
        kit::call(&web, v, Method::POST, &format!("{API}/explain"), Some(body)).await
    }
    .await;
    let e = match answer {
        Ok(e) => e,
        Err(e) => return error_page(&web, v, &e, BACK),
    };
    let verdict = match e["policy_name"].as_str() {
        Some(p) => format!("{p} applies."),
        None => "No policy applies: the connection would be refused.".to_owned(),
    };
    let rows: Vec<Vec<Value>> = kit::items(&e["verdicts"])
        .iter()
        .map(|x| {
            let outcome = match kit::s(x, "outcome") {
                "applies" => "applies",
                "disabled" => "disabled",
                "protocol" => "another protocol",
                "client" => "client network differs",
                "listen_port" => "proxy port differs",
                "target" => "target differs",
                other => other,
            };
            vec![cell(x["position"].clone()), cell(kit::s(x, "policy_name")), cell(outcome), cell(kit::s(x, "reason"))]
        })
        .collect();
    let mut facts = vec![json!(["Verdict", verdict])];
    if let Some(d) = e["destination"].as_str() {
        facts.push(json!(["Target leg to", d]));
    }
    if let Some(s) = e["source_address"].as_str() {
        facts.push(json!(["From source address", s]));
    }
    let ctx = json!({ "title": "Which connection policy applies?", "sections": [
        { "heading": "Answer", "facts": facts },
        { "heading": "Each policy, in order", "table": table(&["#", "Policy", "Outcome", "Why"], rows, "No policies.") },
        { "heading": "Ask again", "forms": [explain_form(&asked)] },
    ], "links": [{ "href": BACK, "text": "All connection policies" }] });
    page(&web, v, "admin.html", ctx)
}
