"""llm-serving: self-hosted LLM serving on AWS EKS. A table of contents; decisions live in stacks/."""

import pulumi

from stacks import config
from stacks.compose import platform, serving

intent = config.load()
plat = platform.build(intent)
served = serving.build(intent, plat)

pulumi.export("clusterName", intent.cluster_name)
pulumi.export("kubeconfig", plat.kubeconfig)
pulumi.export("gatewayUrl", served.gateway_url)
pulumi.export("models", served.model_names)
pulumi.export("modelEndpoints", served.endpoints)
# Where the admin key and each team's keys are, never the keys (every team stack reads these outputs).
for name, where in served.key_locations.items():
    pulumi.export(name, where)
pulumi.export("plan", serving.plan_table(intent))
pulumi.export("platform", plat.shared())  # what team stacks attach to
