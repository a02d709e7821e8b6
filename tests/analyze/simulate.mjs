// Independent IAM evaluation for the analyze tests: @cloud-copilot/iam-simulate (npm, MIT).
// stdin: {"policies": [policy documents], "requests": [{"action","resource","region","context"}]}
// stdout: the identity-policy result per request ("Allowed", "ImplicitlyDenied", "ExplicitlyDenied").
import { createRequire } from 'node:module'
const require = createRequire(process.env.IAM_SIMULATE_DIR + '/package.json')
const { runSimulation } = require('@cloud-copilot/iam-simulate')
let input = ''
for await (const chunk of process.stdin) input += chunk
const { policies, requests } = JSON.parse(input)
const out = []
for (const r of requests) {
  const simulation = {
    request: {
      principal: 'arn:aws:iam::111122223333:role/ci-deployer',
      action: r.action,
      resource: { resource: r.resource, accountId: '111122223333' },
      contextVariables: Object.assign({ 'aws:RequestedRegion': r.region }, r.context || {})
    },
    identityPolicies: policies.map((policy, i) => ({ name: `p${i}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }
  const response = await runSimulation(simulation, {})
  // The identity-policy verdict: resource policies (KMS key policies) are out of the proposal's scope.
  const result = response.result?.analysis?.identityAnalysis?.result ?? JSON.stringify(response.errors ?? response)
  out.push(result)
}
console.log(JSON.stringify(out))
