"""The emulator's hands in moto's EC2: launch templates per source server and the recovery instances' machines.

Calls go straight to moto's in-process backends so the instances DRS launches are the ones `ec2.describe_instances`
shows through the same endpoint, in the same account and region.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models import ec2_backends

DRS_MANAGED_TAG = {"AWSElasticDisasterRecoveryManaged": "drs.amazonaws.com"}

# moto answers describe_instances with these states; DRS reports them in its own enum.
_EC2_STATE = {"pending": "PENDING", "running": "RUNNING", "stopping": "STOPPING", "stopped": "STOPPED",
              "shutting-down": "SHUTTING-DOWN", "terminated": "TERMINATED"}


def _backend(account_id: str, region: str) -> Any:
    return ec2_backends[account_id][region]


def default_image_id() -> str:
    """An Amazon Linux AMI from moto's region-independent default set, loaded into every region's backend."""
    from moto.ec2.models.amis import AMIS

    for ami in AMIS:
        if ami["name"].startswith("amzn-ami-hvm"):
            return str(ami["ami_id"])
    return str(AMIS[0]["ami_id"]) if AMIS else "ami-760aaa0f"


def create_launch_template(account_id: str, region: str, source_server_id: str, instance_type: str) -> str:
    backend = _backend(account_id, region)
    name = f"drs-{source_server_id}"
    # Same seed, same ids: a reset world re-creates templates moto still holds from the previous one.
    if name in backend.launch_template_name_to_ids:
        backend.delete_launch_template(name, None)
    data = {"ImageId": default_image_id(), "InstanceType": instance_type}
    template = backend.create_launch_template(name, "Created by AWS Elastic Disaster Recovery", data,
                                              {"launch-template": dict(DRS_MANAGED_TAG)})
    return str(template.id)


def new_template_version(account_id: str, region: str, template_id: str, data_changes: dict[str, Any],
                         description: str) -> int:
    """DRS writes its launch settings as a new version and makes it the default, as the service does: EC2 edits
    made to an older version stop applying, which is why the order of the two kinds of edits matters."""
    backend = _backend(account_id, region)
    template = backend.get_launch_template(template_id)
    data = {**template.default_version().data, **data_changes}
    version = template.create_version(data, description)
    backend.modify_launch_template(str(version.number), template_id=template_id)
    return int(version.number)


def launch(account_id: str, region: str, template_id: str, tags: dict[str, str], stopped: bool) -> dict[str, Any]:
    """Run the recovery machine from the server's launch template (its default version, as DRS does)."""
    backend = _backend(account_id, region)
    data = backend.get_launch_template(template_id).default_version().data
    kwargs: dict[str, Any] = {
        "instance_type": data.get("InstanceType") or "t3.medium",
        "is_instance_type_default": False,
        "region_name": region,
        "tags": {"instance": dict(tags), "volume": dict(DRS_MANAGED_TAG)},
        "launch_template": {"LaunchTemplateId": template_id, "Version": "$Default"},
    }
    interfaces = data.get("NetworkInterfaces") or []
    subnet = data.get("SubnetId") or next((n.get("SubnetId") for n in interfaces if n.get("SubnetId")), None)
    if subnet:
        kwargs["subnet_id"] = subnet
    groups = data.get("SecurityGroupIds") or []
    if groups:
        kwargs["security_group_ids"] = list(groups)
    reservation = backend.run_instances(data.get("ImageId") or default_image_id(), 1, None, [], **kwargs)
    instance = reservation.instances[0]
    if stopped:
        backend.stop_instances([instance.id])
    volumes = [(name, device.volume_id, device.size) for name, device in instance.get_block_device_mapping]
    return {"instance_id": instance.id, "availability_zone": instance.placement.zone, "volumes": volumes,
            "private_ip": instance.private_ip}


def instance_state(account_id: str, region: str, instance_id: str) -> str:
    for instance in _backend(account_id, region).all_instances():
        if instance.id == instance_id:
            return _EC2_STATE.get(instance.state, "NOT_FOUND")
    return "NOT_FOUND"


def terminate(account_id: str, region: str, instance_id: str) -> bool:
    backend = _backend(account_id, region)
    if instance_state(account_id, region, instance_id) in ("NOT_FOUND", "TERMINATED"):
        return False
    backend.terminate_instances([instance_id])
    return True
