"""The local runtime: the synthesized CDK template deployed into moto, with the real handlers
running in-process and a faithful DynamoDB-stream pump in place of moto's delivery."""
