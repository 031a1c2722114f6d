"""Unit tests for plugins/module_utils/kubeflat_envoy.py: bootstraps and the options it refuses."""
import pytest

from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import (
    ENVOY_DEFAULTS, HEALTH_PATH, HEALTH_VHOST, EnvoyError, check_port, cluster_name, duration,
    envoy_options, headless_name, ingress_bootstrap, outside_balancer_bootstrap, parse_duration,
    retry_policy, sidecar_bootstrap)
from ansible_collections.kubeflat.cluster.plugins.module_utils.kubeflat_envoy import (
    cluster_resolvers, dns_cluster, ingress_drain_seconds, ingress_pre_stop)

UPSTREAMS = [
    {"service": "catalog", "namespace": "shop", "host": "catalog.shop.svc.cluster.local",
     "port": 8080, "local_port": 15001, "health_path": "/ready"},
    {"service": "prices", "namespace": "shop", "host": "prices.shop.svc.cluster.local",
     "port": 9000, "local_port": 15002, "health_path": None},
]


def opts(**overrides):
    return envoy_options(overrides)


# --- durations, ports, options -------------------------------------------------------------

@pytest.mark.parametrize("value,millis", [("250ms", 250), ("2s", 2000), ("0.025s", 25),
                                          (3, 3000), (0.5, 500), (" 1s ", 1000)])
def test_parse_duration(value, millis):
    assert parse_duration(value, "x") == millis


@pytest.mark.parametrize("value", ["5", "1m", "-1s", "0s", "0ms", True, None, "1.5ms", "abc",
                                   "25h", 0])
def test_parse_duration_refuses(value):
    with pytest.raises(EnvoyError) as err:
        parse_duration(value, "app_specs_envoy.per_try_timeout")
    assert "app_specs_envoy.per_try_timeout" in str(err.value)


@pytest.mark.parametrize("millis,text", [(25, "0.025s"), (250, "0.25s"), (1000, "1s"),
                                         (1500, "1.5s"), (15000, "15s")])
def test_duration_formats_envoy_json_durations(millis, text):
    assert duration(millis) == text
    assert parse_duration(text, "x") == millis


@pytest.mark.parametrize("value", [0, 65536, -1, "80x", True, None, 1.5])
def test_check_port_refuses(value):
    with pytest.raises(EnvoyError, match="port number"):
        check_port(value, "p")


def test_envoy_options_defaults_are_valid_and_normalised():
    out = envoy_options({})
    assert set(out) == set(ENVOY_DEFAULTS)
    assert out["per_try_timeout"] == 3000 and out["retries"] == 3
    assert out["outlier_max_ejection_percent"] == 50


@pytest.mark.parametrize("overrides,var,reason", [
    ({"retrys": 2}, "app_specs_envoy.retrys", "unknown option"),
    ({"retries": 11}, "app_specs_envoy.retries", "between 0 and 10"),
    ({"retries": "two"}, "app_specs_envoy.retries", "integer"),
    ({"admin_port": 0}, "app_specs_envoy.admin_port", "port number"),
    ({"per_try_timeout": "20s"}, "app_specs_envoy.per_try_timeout", "longer than request_timeout"),
    ({"health_check_timeout": "5s"}, "app_specs_envoy.health_check_timeout", "shorter than"),
    ({"retry_back_off_max": "10ms"}, "app_specs_envoy.retry_back_off_max", "shorter than"),
    ({"max_retries": 2}, "app_specs_envoy.max_retries", "fewer concurrent retries"),
    ({"outlier_max_ejection_percent": 101}, "app_specs_envoy.outlier_max_ejection_percent",
     "between 0 and 100"),
    ({"dns_refresh_rate": "soon"}, "app_specs_envoy.dns_refresh_rate", "duration"),
])
def test_envoy_options_refuse_with_the_variable_name(overrides, var, reason):
    with pytest.raises(EnvoyError) as err:
        envoy_options(overrides)
    assert err.value.var == var
    assert reason in str(err.value)


def test_envoy_options_refuse_a_non_mapping():
    with pytest.raises(EnvoyError, match="mapping"):
        envoy_options(["retries"], "app_specs_apps[web].envoy")


def test_names():
    assert headless_name("api", "shop", "cluster.local") == "api.shop.svc.cluster.local"
    assert cluster_name("api", "shop") == "shop_api"


# --- sidecar -------------------------------------------------------------------------------

def test_sidecar_has_one_loopback_listener_and_one_dns_cluster_per_upstream():
    boot = sidecar_bootstrap("web", UPSTREAMS, opts())
    listeners = boot["static_resources"]["listeners"]
    clusters = boot["static_resources"]["clusters"]
    assert [(l["address"]["socket_address"]["address"], l["address"]["socket_address"]["port_value"])
            for l in listeners] == [("127.0.0.1", 15001), ("127.0.0.1", 15002)]
    assert [c["name"] for c in clusters] == ["shop_catalog", "shop_prices"]
    for cluster, up in zip(clusters, UPSTREAMS):
        dns = cluster["cluster_type"]["typed_config"]
        assert cluster["cluster_type"]["name"] == "envoy.clusters.dns"
        assert dns["all_addresses_in_single_endpoint"] is False  # strict DNS: one host per A
        assert dns["dns_lookup_family"] == "V4_ONLY"
        assert dns["dns_refresh_rate"] == "5s"
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {"address": up["host"],
                                                         "port_value": up["port"]}
    # Admin on loopback only.
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                          "port_value": 9901}


def test_sidecar_routes_retry_on_another_pod():
    boot = sidecar_bootstrap("web", UPSTREAMS[:1], opts(retries=4, per_try_timeout="500ms"))
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["cluster"] == "shop_catalog"
    assert route["timeout"] == "15s"
    policy = route["retry_policy"]
    assert set(policy["retry_on"].split(",")) == {"5xx", "reset", "connect-failure"}
    assert policy["num_retries"] == 4
    assert policy["per_try_timeout"] == "0.5s"
    assert [p["name"] for p in policy["retry_host_predicate"]] == [
        "envoy.retry_host_predicates.previous_hosts"]
    assert policy["retry_host_predicate"][0]["typed_config"]["@type"].endswith(
        "PreviousHostsPredicate")
    assert policy["host_selection_retry_max_attempts"] >= 3


def test_sidecar_health_checks_and_outlier_detection_sized_for_small_pools():
    boot = sidecar_bootstrap("web", UPSTREAMS, opts(health_check_interval="2s"))
    http_cluster, tcp_cluster = boot["static_resources"]["clusters"]
    check = http_cluster["health_checks"][0]
    assert check["http_health_check"] == {"path": "/ready"}
    assert check["interval"] == "2s" and check["no_traffic_interval"] == "2s"
    assert check["unhealthy_threshold"] == 2 and check["healthy_threshold"] == 1
    assert "tcp_health_check" in tcp_cluster["health_checks"][0]  # no readiness path: TCP
    outlier = http_cluster["outlier_detection"]
    # Envoy's default (10 %) could eject nobody useful in a pool of 2-5 pods.
    assert outlier["max_ejection_percent"] == 50
    assert outlier["consecutive_5xx"] == 3 and outlier["enforcing_consecutive_5xx"] == 100
    assert outlier["split_external_local_origin_errors"] is True
    assert outlier["consecutive_local_origin_failure"] == 2
    assert outlier["enforcing_consecutive_local_origin_failure"] == 100
    assert outlier["enforcing_success_rate"] == 0  # needs >= 5 hosts: off, explicitly
    breakers = http_cluster["circuit_breakers"]["thresholds"][0]
    assert breakers["max_retries"] == 64 and breakers["max_connections"] == 1024


def test_sidecar_refuses_clashing_local_ports_and_no_upstreams():
    clash = [dict(UPSTREAMS[0]), dict(UPSTREAMS[1], local_port=15001)]
    with pytest.raises(EnvoyError, match="already used by catalog"):
        sidecar_bootstrap("web", clash, opts())
    with pytest.raises(EnvoyError, match="admin port"):
        sidecar_bootstrap("web", [dict(UPSTREAMS[0], local_port=9901)], opts())
    with pytest.raises(EnvoyError, match="needs an upstream"):
        sidecar_bootstrap("web", [], opts())


def test_retry_policy_backoff():
    policy = retry_policy(opts(retry_back_off_base="10ms", retry_back_off_max="1s"))
    assert policy["retry_back_off"] == {"base_interval": "0.01s", "max_interval": "1s"}


# --- ingress and outside balancer ----------------------------------------------------------

ROUTES = [
    {"listener": "http", "host": "shop.example", "path": "/", "service": "web",
     "namespace": "shop", "host_name": "web.shop.svc.cluster.local", "port": 8080,
     "health_path": "/ready"},
    {"listener": "http", "host": "shop.example", "path": "/api/catalog", "service": "catalog",
     "namespace": "shop", "host_name": "catalog.shop.svc.cluster.local", "port": 8080,
     "health_path": None},
    {"listener": "alt", "host": "*", "path": "/", "service": "web", "namespace": "shop",
     "host_name": "web.shop.svc.cluster.local", "port": 8080, "health_path": "/ready"},
]
LISTENERS = [{"name": "http", "port": 80}, {"name": "alt", "port": 8000}]


def _vhosts(listener):
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"]


def test_ingress_listens_on_node_ports_and_routes_by_host_and_longest_path():
    boot = ingress_bootstrap(LISTENERS, ROUTES, opts())
    http, alt = boot["static_resources"]["listeners"]
    assert http["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 80}
    assert alt["address"]["socket_address"]["port_value"] == 8000
    vhosts = _vhosts(http)
    assert vhosts[0]["domains"] == [HEALTH_VHOST]
    assert vhosts[0]["routes"][0]["direct_response"]["status"] == 200
    shop = vhosts[1]
    assert shop["domains"] == ["shop.example", "shop.example:80"]
    assert [r["match"]["prefix"] for r in shop["routes"]] == ["/api/catalog", "/"]
    assert [r["route"]["cluster"] for r in shop["routes"]] == ["shop_catalog", "shop_web"]
    assert all("retry_policy" in r["route"] for r in shop["routes"])
    assert _vhosts(alt)[1]["domains"] == ["*"]
    # One cluster per app even when several routes use it; admin stays on loopback.
    assert [c["name"] for c in boot["static_resources"]["clusters"]] == ["shop_catalog",
                                                                        "shop_web"]
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_ingress_refuses_no_listeners():
    with pytest.raises(EnvoyError, match="envoy_ingress_listeners"):
        ingress_bootstrap([], ROUTES, opts())


def test_outside_balancer_lists_every_node_and_checks_the_ingress_health_vhost():
    boot = outside_balancer_bootstrap(LISTENERS, ["10.0.0.1", "10.0.0.2", "10.0.0.3"], opts())
    cluster = boot["static_resources"]["clusters"][0]
    assert cluster["type"] == "STATIC"
    addrs = [e["endpoint"]["address"]["socket_address"] for e in
             cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert addrs == [{"address": a, "port_value": 80} for a in ("10.0.0.1", "10.0.0.2",
                                                                "10.0.0.3")]
    check = cluster["health_checks"][0]["http_health_check"]
    assert check == {"path": HEALTH_PATH, "host": HEALTH_VHOST}
    tcp = boot["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]
    assert tcp["name"] == "envoy.filters.network.tcp_proxy"
    assert tcp["typed_config"]["cluster"] == "ingress_alt"
    with pytest.raises(EnvoyError, match="no node"):
        outside_balancer_bootstrap(LISTENERS, [], opts())


# --- DNS servers, drain, access logs (issue 11) ---------------------------------------------

def test_dns_cluster_queries_the_given_servers_spread_with_short_timeouts():
    cluster = dns_cluster("shop_web", "web.shop.svc.cluster.local", 8080, opts(), "/ready",
                          ["10.0.0.11", "10.0.0.12", "10.0.0.13"])
    config = cluster["cluster_type"]["typed_config"]["typed_dns_resolver_config"]
    assert config["name"] == "envoy.network.dns_resolver.cares"
    cares = config["typed_config"]
    assert [r["socket_address"] for r in cares["resolvers"]] == [
        {"address": a, "port_value": 53} for a in ("10.0.0.11", "10.0.0.12", "10.0.0.13")]
    assert cares["rotate_nameservers"] is True
    assert (cares["query_timeout_seconds"], cares["query_tries"]) == (1, 2)
    assert cares["dns_resolver_options"] == {"no_default_search_domain": True}
    plain = dns_cluster("shop_web", "web.shop.svc.cluster.local", 8080, opts())
    assert "typed_dns_resolver_config" not in plain["cluster_type"]["typed_config"]


def test_cluster_resolvers_follow_the_dns_mode():
    assert cluster_resolvers({"dns_mode": "control_planes", "cluster_dns": ["10.0.0.11"]}) == [
        "10.0.0.11"]
    assert cluster_resolvers({"dns_mode": "service", "cluster_dns": ["10.96.0.10"]}) is None
    assert cluster_resolvers({}) is None


def test_sidecar_and_ingress_pass_the_resolvers_to_every_cluster():
    ups = [dict(u, resolvers=["10.0.0.11"]) for u in UPSTREAMS]
    sidecar = sidecar_bootstrap("web", ups, opts())
    ingress = ingress_bootstrap(LISTENERS, ROUTES, opts(), ["10.0.0.11"])
    for cluster in sidecar["static_resources"]["clusters"] + \
            ingress["static_resources"]["clusters"]:
        cares = cluster["cluster_type"]["typed_config"]["typed_dns_resolver_config"]
        assert cares["typed_config"]["resolvers"][0]["socket_address"]["address"] == "10.0.0.11"


def test_ingress_health_check_filter_answers_before_the_router():
    boot = ingress_bootstrap(LISTENERS, ROUTES, opts())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.health_check",
                                            "envoy.filters.http.router"]
    check = filters[0]["typed_config"]
    assert check["pass_through_mode"] is False
    assert {h["name"]: h["string_match"]["exact"] for h in check["headers"]} == {
        ":path": HEALTH_PATH, ":authority": HEALTH_VHOST}
    log = hcm["typed_config"]["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert log["downstream"] == "%DOWNSTREAM_REMOTE_ADDRESS%"
    assert log["upstream_local"] == "%UPSTREAM_LOCAL_ADDRESS%"


def test_ingress_drain_outlasts_the_balancers_health_checks():
    # (2 failed checks + 1 interval of slack) * 5 s + 1 s timeout = 16 s, + 1 s margin.
    assert ingress_drain_seconds(opts()) == 17
    assert ingress_drain_seconds(opts(health_check_interval="1s", health_check_timeout="500ms",
                                      unhealthy_threshold=2)) == 5
    script = ingress_pre_stop(opts(admin_port=9911))["exec"]["command"][2]
    assert script.startswith("exec 3<>/dev/tcp/127.0.0.1/9911 && printf 'POST /healthcheck/fail")
    assert script.endswith("; sleep 17")


def test_outside_balancer_retries_connects_and_logs_both_addresses():
    boot = outside_balancer_bootstrap(LISTENERS, ["10.0.0.1", "10.0.0.2"], opts())
    tcp = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    assert tcp["max_connect_attempts"] == 3
    log = tcp["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert (log["downstream"], log["upstream_host"], log["upstream_local"]) == (
        "%DOWNSTREAM_REMOTE_ADDRESS%", "%UPSTREAM_HOST%", "%UPSTREAM_LOCAL_ADDRESS%")
