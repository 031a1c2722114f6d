"""Unit tests for the spec builders (plugins/plugin_utils/kubeflat_specs.py, kubeflat_edge.py,
kubeflat_coredns.py, kubeflat_catalog.py, ...): catalog -> manifests, and refusals."""
import copy
import hashlib

import pytest
import yaml

from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_catalog import spec_settings
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_coredns import coredns_settings, corefile
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_edge import ingress_settings, render_edge
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_manifests import (
    CHECKSUM_ANNOTATION, content_hash, dump_yaml, manifest_order)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_spec_values import (
    SpecError, format_memory, parse_memory)
from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_specs import render_apps

from lab_catalog import LAB, SETTINGS, lab_model

MODEL = lab_model("w1", "w2")

SERVICE_DNS_MODEL = lab_model(dns_mode="service")


def apps():
    return copy.deepcopy(LAB["app_specs_apps"])


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(documents, kind):
    return [d for d in documents if d["kind"] == kind]


def render(catalog=None, settings=None):
    return render_apps(apps() if catalog is None else catalog, settings or SETTINGS, MODEL)


def app(name, **fields):
    entry = {"name": name, "image": "example/%s:1" % name, "ports": [{"name": "http",
                                                                       "port": 8080}]}
    entry.update(fields)
    return entry


# --- quantities ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,size", [("256Mi", 256 << 20), ("1Gi", 1 << 30), ("1G", 10 ** 9),
                                       ("1048576", 1 << 20), ("64Ki", 64 << 10)])
def test_parse_memory(text, size):
    assert parse_memory(text, "m") == size


@pytest.mark.parametrize("value", ["256MB", "1.5Gi", "-1Mi", "", None, True, "Mi"])
def test_parse_memory_refuses(value):
    with pytest.raises(SpecError, match="memory quantity"):
        parse_memory(value, "app_specs_apps[x].resources.limits.memory")


def test_format_memory_uses_the_largest_exact_binary_unit():
    assert format_memory(320 << 20) == "320Mi"
    assert format_memory(2 << 30) == "2Gi"
    assert format_memory(1000) == "1000"


# --- the lab catalog -----------------------------------------------------------------------

def test_lab_catalog_renders_the_expected_files():
    assert sorted(render()) == [
        "envoy/sidecars/shop/catalog.yaml", "envoy/sidecars/shop/web.yaml",
        "specs/shop/catalog.yaml", "specs/shop/namespace.yaml", "specs/shop/prices.yaml",
        "specs/shop/web.yaml"]


def test_render_is_byte_identical_and_independent_of_catalog_order():
    first = render()
    assert render() == first
    assert render(list(reversed(apps()))) == first


def test_headless_service_selects_every_deployment_of_the_app():
    catalog = docs(render()["specs/shop/catalog.yaml"])
    service = by_kind(catalog, "Service")[0]
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [8080, 9090]
    selector = service["spec"]["selector"]
    for deployment in by_kind(catalog, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items())
        # ...while each Deployment's own selector only matches its own pods.
        assert deployment["spec"]["selector"]["matchLabels"]["kubeflat.io/deployment"] == \
            deployment["metadata"]["name"]


def test_memory_spread_steps_limits_across_deployments():
    deployments = by_kind(docs(render()["specs/shop/catalog.yaml"]), "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == ["catalog-m0", "catalog-m1",
                                                           "catalog-m2"]
    limits = [d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
              for d in deployments]
    assert limits == ["256Mi", "320Mi", "384Mi"]
    assert sum(d["spec"]["replicas"] for d in deployments) == 3
    requests = {d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
                for d in deployments}
    assert requests == {"192Mi"}


def test_memory_spread_distributes_replicas():
    catalog = [app("a", replicas=5, resources={"limits": {"memory": "1Gi"}},
                   memory_spread={"deployments": 2, "step": "512Mi"})]
    deployments = by_kind(docs(render(catalog)["specs/shop/a.yaml"]), "Deployment")
    assert [d["spec"]["replicas"] for d in deployments] == [3, 2]
    assert [d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            for d in deployments] == ["1Gi", "1536Mi"]


def test_sidecar_configmap_is_immutable_and_named_by_its_content():
    files = render()
    web = docs(files["specs/shop/web.yaml"])
    configmap = by_kind(web, "ConfigMap")[0]
    envoy_text = files["envoy/sidecars/shop/web.yaml"]
    assert configmap["immutable"] is True
    assert configmap["data"]["envoy.yaml"] == envoy_text
    assert configmap["metadata"]["name"] == "web-envoy-" + content_hash(envoy_text)
    pod = by_kind(web, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "envoy-config",
                               "configMap": {"name": configmap["metadata"]["name"]}}]
    sidecar = pod["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: up before, down after the app
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    assert "/etc/envoy/envoy.yaml" in sidecar["args"]
    # prices calls nothing: no sidecar, no ConfigMap.
    prices = docs(files["specs/shop/prices.yaml"])
    assert not by_kind(prices, "ConfigMap")
    assert "initContainers" not in by_kind(prices, "Deployment")[0]["spec"]["template"]["spec"]


def test_app_config_is_one_yaml_env_var_and_upstreams_are_local_urls():
    container = by_kind(docs(render()["specs/shop/web.yaml"]), "Deployment")[0][
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert yaml.safe_load(env["APP_CONFIG"]) == {"title": "kubeflat shop", "page_size": 20}
    assert env["UPSTREAM_CATALOG_URL"] == "http://127.0.0.1:15001"
    assert len([e for e in container["env"] if e["name"] == "APP_CONFIG"]) == 1


def test_config_change_rolls_pods_and_envoy_change_renames_configmap():
    base = render()
    changed = apps()
    changed[0]["config"]["page_size"] = 50
    after = render(changed)

    def annotation(files):
        return by_kind(docs(files["specs/shop/web.yaml"]), "Deployment")[0][
            "spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]

    def configmap(files):
        return by_kind(docs(files["specs/shop/web.yaml"]), "ConfigMap")[0]["metadata"]["name"]

    assert annotation(after) != annotation(base)
    assert configmap(after) == configmap(base)  # the sidecar did not change
    retuned = render(apps(), dict(SETTINGS, envoy={"retries": 2}))
    assert configmap(retuned) != configmap(base)
    assert annotation(retuned) != annotation(base)
    expected = hashlib.sha256((dump_yaml({"page_size": 20, "title": "kubeflat shop"}) + "\0"
                               + base["envoy/sidecars/shop/web.yaml"]).encode()).hexdigest()
    assert annotation(base) == expected


def test_graceful_shutdown_and_probes():
    container_pod = by_kind(docs(render()["specs/shop/web.yaml"]), "Deployment")[0][
        "spec"]["template"]["spec"]
    container = container_pod["containers"][0]
    assert container_pod["terminationGracePeriodSeconds"] == 30
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["initialDelaySeconds"] == 5


def test_upstream_health_check_uses_the_callee_readiness_path():
    envoy = yaml.safe_load(render()["envoy/sidecars/shop/web.yaml"])
    cluster = envoy["static_resources"]["clusters"][0]
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "catalog.shop.svc.cluster.local",
                                         "port_value": 8080}
    assert cluster["health_checks"][0]["http_health_check"]["path"] == "/ready"


def test_per_app_envoy_overrides_and_explicit_local_ports():
    catalog = [app("a", calls=[{"app": "b", "local_port": 16000}, "c"], envoy={"retries": 5}),
               app("b"), app("c")]
    envoy = yaml.safe_load(render(catalog)["envoy/sidecars/shop/a.yaml"])
    ports = [l["address"]["socket_address"]["port_value"]
             for l in envoy["static_resources"]["listeners"]]
    assert ports == [16000, 15001]
    route = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["retry_policy"]["num_retries"] == 5


def test_cross_namespace_call():
    catalog = [app("a", calls=[{"app": "b", "namespace": "other"}]),
               app("b", namespace="other")]
    files = render(catalog)
    assert "specs/other/namespace.yaml" in files
    assert "b.other.svc.cluster.local" in files["envoy/sidecars/shop/a.yaml"]


# --- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("catalog,var,reason", [
    ([{"name": "a", "ports": [{"name": "http", "port": 80}]}], "app_specs_apps[a].image",
     "image reference"),
    ([app("A")], "app_specs_apps[A].name", "DNS label"),
    ([app("a" * 41)], "app_specs_apps[%s].name" % ("a" * 41), "at most 40"),
    ([app("a"), app("a")], "app_specs_apps[a].name", "defined twice"),
    ([app("a", calls=["nope"])], "app_specs_apps[a].calls[0]", "no app nope"),
    ([app("a", calls=["a"])], "app_specs_apps[a].calls[0]", "cannot call itself"),
    ([app("a", calls=["b", "b"]), app("b")], "app_specs_apps[a].calls[1]", "called twice"),
    ([app("a", calls=[{"app": "b", "local_port": 8080}]), app("b")],
     "app_specs_apps[a].calls[0].local_port", "the app's port http"),
    ([app("a", calls=[{"app": "b", "port": "grpc"}]), app("b")],
     "app_specs_apps[a].calls[0].port", "not a port of b"),
    ([app("a", replicas=3, memory_spread={"deployments": 3, "step": "64Mi"})],
     "app_specs_apps[a].resources.limits.memory", "needs a base memory limit"),
    ([app("a", replicas=1, resources={"limits": {"memory": "1Gi"}},
          memory_spread={"deployments": 2, "step": "64Mi"})],
     "app_specs_apps[a].memory_spread.deployments", "more Deployments than replicas"),
    ([app("a", probes={"readiness": {"path": "/r", "port": "admin"}})],
     "app_specs_apps[a].probes.readiness.port", "port names"),
    ([app("a", probes={"readiness": {"path": "ready"}})],
     "app_specs_apps[a].probes.readiness.path", "absolute"),
    ([app("a", pre_stop_sleep_seconds=30)], "app_specs_apps[a].pre_stop_sleep_seconds",
     "shorter than termination_grace_period_seconds"),
    ([app("a", replica=2)], "app_specs_apps[a].replica", "unknown key"),
    ([app("a", config=["x"])], "app_specs_apps[a].config", "YAML mapping"),
    ([app("a", envoy={"retries": 99})], "app_specs_apps[a].envoy.retries", "between 0 and 10"),
    ([app("a", ports=[{"name": "http", "port": 80}, {"name": "web", "port": 80}])],
     "app_specs_apps[a].ports[1]", "duplicates port"),
    ([app("a", ports=[{"name": "http", "port": 70000}])], "app_specs_apps[a].ports[0].port",
     "port number"),
    ([app("a", ports=[])], "app_specs_apps[a].ports", "non-empty"),
    ([app("a", resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}})],
     "app_specs_apps[a].resources.requests.memory", "larger than limits"),
    ([app("a", resources={"limits": {"cpu": "lots"}})], "app_specs_apps[a].resources.limits.cpu",
     "CPU quantity"),
    ([app("a", replicas=-1)], "app_specs_apps[a].replicas", "between 0 and 1000"),
    ([app("a", ingress=[{"host": "Bad Host"}])], "app_specs_apps[a].ingress[0].host",
     "host name"),
    ([app("a", ingress=[{"host": "x.example"}]), app("b", ingress=[{"host": "x.example"}])],
     "app_specs_apps[b].ingress[0]", "already routed"),
    (["web"], "app_specs_apps[0]", "mapping"),
])
def test_catalog_refusals_name_the_variable(catalog, var, reason):
    with pytest.raises(SpecError) as err:
        render(catalog)
    assert err.value.var == var, str(err.value)
    assert reason in str(err.value)


@pytest.mark.parametrize("settings,var", [
    ({"namespace": "Bad_NS"}, "app_specs_namespace"),
    ({"config_env": "APP-CONFIG"}, "app_specs_config_env"),
    ({"envoy": {"per_try_timeout": "1m"}}, "app_specs_envoy.per_try_timeout"),
    ({"envoy_image": ""}, "app_specs_envoy_image"),
    ({"colour": "blue"}, "app_specs_colour"),
])
def test_settings_refusals(settings, var):
    with pytest.raises(SpecError) as err:
        spec_settings(settings)
    assert err.value.var == var


# --- edge: ingress, outside balancer, CoreDNS ----------------------------------------------

def edge(ingress=None, coredns=None, catalog=None):
    return render_edge(apps() if catalog is None else catalog, SETTINGS, ingress or {},
                       {} if coredns is None else coredns, MODEL)


def test_edge_files_and_determinism():
    files = edge()
    assert sorted(files) == ["envoy/ingress.yaml", "envoy/outside-balancer.yaml",
                             "specs/kube-system/coredns.yaml",
                             "specs/kubeflat-ingress/envoy-ingress.yaml"]
    assert edge() == files
    assert "specs/kube-system/coredns.yaml" not in render_edge(apps(), SETTINGS, {}, None,
                                                               SERVICE_DNS_MODEL)


def test_ingress_daemonset_uses_host_network_and_routes_to_headless_names():
    files = edge()
    manifests = docs(files["specs/kubeflat-ingress/envoy-ingress.yaml"])
    daemonset = by_kind(manifests, "DaemonSet")[0]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["containers"][0]["ports"][0]["hostPort"] == 80
    assert by_kind(manifests, "ConfigMap")[0]["data"]["envoy.yaml"] == files["envoy/ingress.yaml"]
    text = files["envoy/ingress.yaml"]
    assert "web.shop.svc.cluster.local" in text and "catalog.shop.svc.cluster.local" in text
    assert "prices.shop.svc.cluster.local" not in text  # prices has no ingress entry


def test_outside_balancer_lists_every_ingress_node():
    outside = yaml.safe_load(edge()["envoy/outside-balancer.yaml"])
    endpoints = outside["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0][
        "lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints] == [
        "10.77.0.11", "10.77.0.21", "10.77.0.22"]
    workers_only = yaml.safe_load(edge({"on_control_planes": False})[
        "envoy/outside-balancer.yaml"])
    endpoints = workers_only["static_resources"]["clusters"][0]["load_assignment"][
        "endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints] == [
        "10.77.0.21", "10.77.0.22"]


def test_ingress_refusals():
    with pytest.raises(SpecError) as err:
        edge(catalog=[app("a", ingress=[{"host": "a.example", "listener": "https"}])])
    assert err.value.var == "app_specs_apps[a].ingress[0].listener"
    with pytest.raises(SpecError, match="duplicate"):
        ingress_settings({"listeners": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})
    with pytest.raises(SpecError, match="non-empty"):
        ingress_settings({"listeners": []})
    with pytest.raises(SpecError) as err:
        ingress_settings({"on_control_planes": "yes"})
    assert err.value.var == "envoy_ingress_on_control_planes"


def test_coredns_runs_on_control_planes_with_host_network():
    manifests = docs(edge()["specs/kube-system/coredns.yaml"])
    daemonset = by_kind(manifests, "DaemonSet")[0]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    service = by_kind(manifests, "Service")[0]
    assert service["spec"]["clusterIP"] == MODEL["dns_service_ip"]
    assert service["spec"]["selector"] == daemonset["spec"]["selector"]["matchLabels"]
    configmap = by_kind(manifests, "ConfigMap")[0]
    assert configmap["immutable"] is True
    assert "kubernetes cluster.local in-addr.arpa" in configmap["data"]["Corefile"]
    assert {k for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")} <= \
        {d["kind"] for d in manifests}


def test_corefile_binds_the_node_address_only():
    text = corefile(MODEL, coredns_settings({"cache_seconds": 0}))
    assert "bind {$NODE_IP}" in text
    assert "cache" not in text


def test_coredns_refusals():
    with pytest.raises(SpecError) as err:
        coredns_settings({"health_port": 8181})
    assert err.value.var == "envoy_ingress_coredns_ready_port"
    with pytest.raises(SpecError, match="DNS port 53"):
        coredns_settings({"metrics_port": 53})


def test_manifest_order_puts_namespaces_first():
    assert manifest_order(["specs/shop/web.yaml", "specs/kubeflat-ingress/envoy-ingress.yaml",
                           "specs/shop/namespace.yaml"]) == [
        "specs/shop/namespace.yaml", "specs/kubeflat-ingress/envoy-ingress.yaml",
        "specs/shop/web.yaml"]


# --- cluster DNS and the ingress drain (issue 11) -------------------------------------------

def _resolvers(cluster):
    config = cluster["cluster_type"]["typed_config"].get("typed_dns_resolver_config")
    if config is None:
        return None
    return [r["socket_address"]["address"] for r in config["typed_config"]["resolvers"]]


def test_sidecars_and_ingress_resolve_through_the_control_plane_addresses():
    sidecar = yaml.safe_load(render()["envoy/sidecars/shop/web.yaml"])
    ingress = yaml.safe_load(edge()["envoy/ingress.yaml"])
    clusters = sidecar["static_resources"]["clusters"] + ingress["static_resources"]["clusters"]
    assert clusters
    assert all(_resolvers(c) == MODEL["cluster_dns"] == ["10.77.0.11"] for c in clusters)


def test_service_dns_mode_leaves_envoy_on_the_pod_resolver():
    sidecar = yaml.safe_load(render_apps(apps(), SETTINGS, SERVICE_DNS_MODEL)[
        "envoy/sidecars/shop/web.yaml"])
    ingress = yaml.safe_load(render_edge(apps(), SETTINGS, {}, {}, SERVICE_DNS_MODEL)[
        "envoy/ingress.yaml"])
    for cluster in sidecar["static_resources"]["clusters"] + \
            ingress["static_resources"]["clusters"]:
        assert _resolvers(cluster) is None


def test_control_plane_dns_without_coredns_is_refused():
    with pytest.raises(SpecError) as err:
        render_edge(apps(), SETTINGS, {}, None, MODEL)
    assert err.value.var == "envoy_ingress_coredns"
    assert "10.77.0.11" in str(err.value) and "kubeflat_dns_mode: service" in str(err.value)


def test_ingress_drains_before_it_stops():
    manifests = docs(edge()["specs/kubeflat-ingress/envoy-ingress.yaml"])
    pod = by_kind(manifests, "DaemonSet")[0]["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["bash", "-c"]
    assert "/dev/tcp/127.0.0.1/9901" in command[2] and "POST /healthcheck/fail" in command[2]
    # Default checks: 5 s interval, 2 failures to eject, 1 s timeout -> 17 s of draining.
    assert command[2].endswith("sleep 17")
    assert pod["terminationGracePeriodSeconds"] == 30
    slow = docs(render_edge(apps(), dict(SETTINGS, envoy={"health_check_interval": "10s"}),
                            {}, {}, MODEL)["specs/kubeflat-ingress/envoy-ingress.yaml"])
    slow_pod = by_kind(slow, "DaemonSet")[0]["spec"]["template"]["spec"]
    assert slow_pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][2].endswith(
        "sleep 32")
    assert slow_pod["terminationGracePeriodSeconds"] == 42


# --- restart an app now (app_specs_restart, kubeflat_restart.py) ---------------------------

RESTART = "kubectl.kubernetes.io/restartedAt"
NOW = "2026-12-02T10:00:00Z"


def _template_annotations(files, rel):
    return [d["spec"]["template"]["metadata"]["annotations"]
            for d in by_kind(docs(files[rel]), "Deployment")]


def test_restart_annotates_only_the_named_app_and_the_record_keeps_it():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import restart_record
    plain = render()
    record = restart_record(apps(), "catalog", {}, NOW)
    assert record == {"catalog": NOW}
    restarted = render(settings=dict(SETTINGS, restarts=record))
    # Every Deployment of catalog (its memory spread too) rolls; web's file is byte-identical.
    catalog = _template_annotations(restarted, "specs/shop/catalog.yaml")
    assert len(catalog) == 3 and all(a[RESTART] == NOW for a in catalog)
    assert all(CHECKSUM_ANNOTATION in a for a in catalog)
    assert restarted["specs/shop/web.yaml"] == plain["specs/shop/web.yaml"]
    assert restarted["specs/shop/catalog.yaml"] != plain["specs/shop/catalog.yaml"]
    # A later run that names no app reads the record back: the same bytes, no new roll.
    again = restart_record(apps(), "", record, "2026-12-03T09:00:00Z")
    assert again == record
    assert render(settings=dict(SETTINGS, restarts=again)) == restarted
    # Naming it again rolls it again.
    later = restart_record(apps(), "catalog", record, "2026-12-03T09:00:00Z")
    assert _template_annotations(render(settings=dict(SETTINGS, restarts=later)),
                                 "specs/shop/catalog.yaml")[0][RESTART] == "2026-12-03T09:00:00Z"


def test_restart_names_several_apps_and_drops_apps_that_left():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import restart_record
    record = restart_record(apps(), " web ,catalog,web", {"gone": NOW}, NOW)
    assert record == {"catalog": NOW, "web": NOW}


@pytest.mark.parametrize("raw,value", [("nosuch", "nosuch"), ("web,nosuch", "nosuch"),
                                       (12, 12)])
def test_restart_of_an_unknown_app_is_refused_naming_variable_and_value(raw, value):
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import RestartError, restart_record
    with pytest.raises(RestartError) as exc:
        restart_record(apps(), raw, {}, NOW)
    assert exc.value.var == "app_specs_restart" and exc.value.value == value
    assert str(exc.value).startswith("app_specs_restart=%r" % (value,))


def test_restart_filter_error_names_the_variable():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.kubeflat.cluster.plugins.filter.restart import kubeflat_app_restarts
    with pytest.raises(AnsibleFilterError) as exc:
        kubeflat_app_restarts(apps(), "nosuch", None, NOW)
    assert "app_specs_restart='nosuch': no such app in app_specs_apps (apps: web, catalog" \
        in str(exc.value)


def test_a_bad_restart_record_is_refused_naming_the_variable():
    with pytest.raises(SpecError) as exc:
        spec_settings({"restarts": {"web": 5}})
    assert exc.value.var == "app_specs_restart"


def test_restart_record_file_round_trips():
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import record_text, restart_record
    record = {"catalog": NOW, "web": "2026-12-01T08:00:00Z"}
    text = record_text(record)
    assert yaml.safe_load(text) == record
    assert restart_record(apps(), "", yaml.safe_load(text), NOW) == record


def test_restarted_manifests_pass_kubernetes_validate():
    from ansible_collections.kubeflat.cluster.plugins.plugin_utils.kubeflat_checkers import KubeValidator
    from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_restart import restart_record
    files = render(settings=dict(SETTINGS, restarts=restart_record(apps(), "web,catalog", {},
                                                                   NOW)))
    validator = KubeValidator("1.37.0", strict=True)
    for rel in ("specs/shop/web.yaml", "specs/shop/catalog.yaml"):
        assert validator.check(rel, files[rel]) == [], rel
