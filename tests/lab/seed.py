"""Seed servers straight into Nova's databases (no compute, scheduler, conductor).

Spec (JSON):
  {"project_id": "...", "user_id": "...",
   "servers": [{"name": "vm-1",
                "fixed": "10.0.0.5",          # fixed IPv4 (default 10.0.0.<n>)
                "floating": "127.1.0.5",      # floating IPv4, optional
                "ipv6": "fd00:10::5",         # fixed IPv6, optional
                "network": "private",
                "metadata": {"k": "v"}, "tags": ["t"],
                "status": "ACTIVE",            # ACTIVE|SHUTOFF|ERROR|BUILD|PAUSED|SUSPENDED
                "host": "novalab-compute"}]}   # compute host (no service runs)
Result: {"servers": [{"id": "<uuid>", "name": "vm-1"}, ...]}

  venv/bin/python seed.py --config-file S/etc/nova.conf < spec.json   (run in S)
or, faster, POST the spec to the lab's Nova at /_lab/seed (serve.py).
POST /_lab/state {"id": uuid, "status": "SHUTOFF"} changes the state of one
server (Nova's stop/start actions need a compute service the lab lacks).

Each server gets an InstanceMapping, a RequestSpec and an info_cache, so the
real Nova API lists, shows, renames, tags, updates metadata of and deletes it.
"""
import datetime
import sys

IMAGE_REF = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
NETWORK_ID = '3f9fd4a2-9dbc-4d2f-8e7c-1e7a2f5d0001'
# Servers live on a compute host that has no service record, as after a
# compute node was removed: Nova's DELETE then takes the real path (task_state
# deleting, saved, so `updated` and changes-since see it) and ends in a local
# delete. With host None Nova would treat them as still booting and destroy
# them without touching `updated`.
COMPUTE_HOST = 'novalab-compute'
_counter = [0]


def _states(status):
    from nova.compute import power_state, vm_states
    return {
        'ACTIVE': (vm_states.ACTIVE, power_state.RUNNING),
        'SHUTOFF': (vm_states.STOPPED, power_state.SHUTDOWN),
        'ERROR': (vm_states.ERROR, power_state.NOSTATE),
        'BUILD': (vm_states.BUILDING, power_state.NOSTATE),
        'PAUSED': (vm_states.PAUSED, power_state.PAUSED),
        'SUSPENDED': (vm_states.SUSPENDED, power_state.SUSPENDED),
    }[status.upper()]


def _nw_info(spec, port_id, idx):
    from nova.network import model as nm
    floating = [nm.IP(address=spec['floating'], type='floating', version=4)] \
        if spec.get('floating') else []
    fixed4 = nm.FixedIP(address=spec.get('fixed') or '10.0.0.%d' % (10 + idx % 240),
                        floating_ips=floating)
    subnets = [nm.Subnet(cidr='10.0.0.0/8', ips=[fixed4],
                         gateway=nm.IP(address='10.0.0.1', type='gateway'))]
    if spec.get('ipv6'):
        subnets.append(nm.Subnet(cidr='fd00:10::/64', ips=[nm.FixedIP(address=spec['ipv6'])],
                                 gateway=nm.IP(address='fd00:10::1', type='gateway')))
    net = nm.Network(id=NETWORK_ID, label=spec.get('network', 'private'),
                     bridge='br-int', subnets=subnets)
    vif = nm.VIF(id=port_id, address='fa:16:3e:%02x:%02x:%02x' % (
        (idx >> 16) & 255, (idx >> 8) & 255, idx & 255),
        network=net, type='ovs', devname='tap' + port_id[:11],
        ovs_interfaceid=port_id, active=True)
    return nm.NetworkInfo([vif])


def _flavor(ctxt):
    from nova import exception, objects
    try:
        return objects.Flavor.get_by_flavor_id(ctxt, '1')
    except exception.FlavorNotFound:
        f = objects.Flavor(ctxt, name='m1.tiny', flavorid='1', memory_mb=512,
                           vcpus=1, root_gb=1, ephemeral_gb=0, swap=0,
                           rxtx_factor=1.0, is_public=True, disabled=False,
                           extra_specs={})
        f.create()
        return f


def _cell(ctxt):
    from nova import objects
    return [c for c in objects.CellMappingList.get_all(ctxt) if c.name == 'cell1'][0]


def seed(spec):
    from nova import context as nova_context
    from nova import objects
    from oslo_utils import uuidutils
    project_id, user_id = spec['project_id'], spec['user_id']
    ctxt = nova_context.RequestContext(user_id=user_id, project_id=project_id,
                                       is_admin=True)
    flavor = _flavor(ctxt)
    cell = _cell(ctxt)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    out = []
    with nova_context.target_cell(ctxt, cell) as cctxt:
        for s in spec['servers']:
            _counter[0] += 1
            idx = _counter[0]
            uuid = uuidutils.generate_uuid()
            port_id = uuidutils.generate_uuid()
            vm_state, power = _states(s.get('status', 'ACTIVE'))
            inst = objects.Instance(
                context=cctxt, uuid=uuid, project_id=project_id, user_id=user_id,
                display_name=s['name'], hostname='vm-%d' % idx,
                vm_state=vm_state, power_state=power,
                task_state=None, host=s.get('host', COMPUTE_HOST),
                node=s.get('host', COMPUTE_HOST), compute_id=None,
                availability_zone='nova', image_ref=IMAGE_REF,
                flavor=flavor, instance_type_id=flavor.id,
                memory_mb=flavor.memory_mb, vcpus=flavor.vcpus,
                root_gb=flavor.root_gb, ephemeral_gb=flavor.ephemeral_gb,
                created_at=now, updated_at=now, launched_at=now, key_name=None,
                config_drive='', locked=False, progress=0,
                metadata=dict(s.get('metadata', {})), system_metadata={},
                info_cache=objects.InstanceInfoCache(
                    network_info=_nw_info(s, port_id, idx)))
            inst.create()
            if s.get('tags'):
                objects.TagList.create(cctxt, uuid, list(s['tags']))
            objects.RequestSpec.from_components(
                ctxt, uuid, {'id': IMAGE_REF, 'properties': {}}, flavor,
                None, None, {'scheduler_hints': {}}, None, None,
                project_id=project_id, user_id=user_id).create()
            objects.InstanceMapping(
                ctxt, instance_uuid=uuid, cell_mapping=cell,
                project_id=project_id, user_id=user_id,
                queued_for_delete=False).create()
            out.append({'id': uuid, 'name': s['name']})
    return {'servers': out}


def set_state(spec):
    from nova import context as nova_context
    from nova import objects
    ctxt = nova_context.get_admin_context()
    with nova_context.target_cell(ctxt, _cell(ctxt)) as cctxt:
        inst = objects.Instance.get_by_uuid(cctxt, spec['id'])
        inst.vm_state, inst.power_state = _states(spec['status'])
        inst.save()
    return {'id': spec['id'], 'status': spec['status']}


def main():
    import argparse
    import json
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config-file', required=True)
    a = p.parse_args()
    from nova import monkey_patch
    monkey_patch.patch(backend='threading')  # as the API; no eventlet
    from nova import config, objects
    config.parse_args([sys.argv[0]], default_config_files=[a.config_file])
    objects.register_all()
    print(json.dumps(seed(json.load(sys.stdin))))


if __name__ == '__main__':
    main()
